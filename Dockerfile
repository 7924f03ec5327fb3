FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml alembic.ini ./
COPY firmware_protocol ./firmware_protocol
COPY server ./server
COPY device_sim ./device_sim
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .
ENV UMB_EMBEDDED_BROKER=false
