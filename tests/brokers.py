"""A private Mosquitto for one test: the project's generated conf with a given password file
and ACL, on a free port. Used by tests/integration/test_broker_auth.py and the e2e stacks."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.broker.mosquitto import MosquittoConfOptions, write_mosquitto_conf
from tests.services import free_port, in_ci, port_open


@dataclass
class PrivateMosquitto:
    port: int
    pid_file: Path
    log: Path


def mosquitto_binary() -> str:
    """The installed mosquitto; without one the test fails under CI=true, else skips."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        if in_ci():
            pytest.fail("mosquitto binary not installed (CI=true)")
        pytest.skip("mosquitto binary not installed")
    return binary


@contextmanager
def private_mosquitto(
    password_file: Path, acl_file: Path, work_dir: Path
) -> Iterator[PrivateMosquitto]:
    """Mosquitto on a free port reading `password_file` and `acl_file`; its conf, pid file and
    log go to `work_dir`. Yields once it listens and has written its pid file; stopped on exit."""
    binary = mosquitto_binary()
    port = free_port()
    pid_file = work_dir / "mosquitto.pid"
    conf = write_mosquitto_conf(
        work_dir / "mosquitto.conf",
        password_file,
        acl_file,
        MosquittoConfOptions(port=port, pid_file=pid_file, user=getpass.getuser()),
    )
    log_path = work_dir / "mosquitto.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while not (port_open("127.0.0.1", port, 0.2) and pid_file.exists()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"mosquitto did not start: {log_path.read_text()}")
                time.sleep(0.05)
            yield PrivateMosquitto(port, pid_file, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
