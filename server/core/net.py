"""Small socket helpers for picking listen ports."""

from __future__ import annotations

import socket


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port_or(preferred: int, host: str = "127.0.0.1") -> int:
    """`preferred` if nothing listens there (e.g. no system Mosquitto on 1883), else any."""
    if port_free(preferred, host):
        return preferred
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
