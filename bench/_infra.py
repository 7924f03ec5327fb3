"""What the benchmarks share: a private Mosquitto with the project's passwd/ACL, a throw-away
PostgreSQL database, a provisioned fleet, and a load generator in its own process.

Everything listens on 127.0.0.1 only, and every loop is bounded in count and time.
"""

from __future__ import annotations

import getpass
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from firmware_protocol import encode, topic_for
from firmware_protocol.messages import Heartbeat, SlotEvent, SlotEventKind, SlotState
from server.broker.mosquitto import MosquittoConfOptions, write_mosquitto_conf
from server.config import Settings
from server.core.db import Database
from server.core.migrate import upgrade
from server.kiosks import service as kiosks
from server.partners import service as partners

PG_ADMIN = os.environ.get(
    "UMB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("UMB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@contextmanager
def bench_database(prefix: str = "umb_bench") -> Iterator[str]:
    """A throw-away PostgreSQL database migrated to head, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        yield url
    finally:
        try:
            with admin.connect() as c:
                # DROP waits for every backend of the cluster to absorb a barrier; one stuck
                # client elsewhere must not hang the benchmark after its figures are out.
                c.execute(text("SET statement_timeout = '60s'"))
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except DBAPIError as exc:
            print(f"could not drop {name} ({type(exc.orig).__name__}); drop it by hand")
        finally:
            admin.dispose()


def provision(settings: Settings, count: int) -> list[kiosks.KioskCredentials]:
    db = Database(settings.db_url)
    try:
        with db.transaction() as session:
            partner = partners.find_or_register(session, name="Bench Partner", region="Bench")
            creds = kiosks.seed_fleet(session, count, partner_id=partner.id, lat=31.23, lon=121.47)
            kiosks.export_broker_files(session, settings)
    finally:
        db.dispose()
    return creds


@contextmanager
def private_mosquitto(settings: Settings, workdir: Path) -> Iterator[int]:
    """Mosquitto with the project's password file and ACL, on a free loopback port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = write_mosquitto_conf(
        workdir / "mosquitto.conf",
        settings.broker_password_file,
        settings.broker_acl_file,
        MosquittoConfOptions(
            port=port,
            user=getpass.getuser(),
            max_queued_messages=0,  # unlimited: a slow consumer must not lose QoS 1 messages
            max_inflight_messages=1000,
            log_dest=f"file {workdir / 'mosquitto.log'}",
        ),
    )
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


# ------------------------------------------------------------------ load generator


@dataclass(frozen=True)
class Load:
    """`per_kiosk` messages from each kiosk; `hb_every` = one heartbeat in that many messages
    (1 = heartbeats only), the rest slot events; `rate` caps messages/s overall (0 = flat out)."""

    per_kiosk: int
    hb_every: int = 2
    rate: float = 0.0
    seq_start: int = 1


class _KioskModel:
    """Just enough of a kiosk to send consistent events and snapshots."""

    def __init__(self, kiosk_id: str, index: int) -> None:
        self.kiosk_id = kiosk_id
        self.tags: list[bytes | None] = [
            (index * 64 + s).to_bytes(8, "big") if s % 4 else None for s in range(22)
        ]
        self.cursor = 0

    def next_event(self, seq: int, ts: int) -> SlotEvent:
        slot = self.cursor % 22
        self.cursor += 1
        tag = self.tags[slot]
        if tag is None:
            tag = (10**12 + seq * 100 + slot).to_bytes(8, "big")
            self.tags[slot] = tag
            return SlotEvent(self.kiosk_id, seq, ts, slot + 1, SlotEventKind.INSERTED, tag)
        self.tags[slot] = None
        return SlotEvent(self.kiosk_id, seq, ts, slot + 1, SlotEventKind.REMOVED, tag)

    def heartbeat(self, seq: int, ts: int) -> Heartbeat:
        return Heartbeat(self.kiosk_id, seq, ts, -70, tuple(SlotState(tag=t) for t in self.tags))


def _publisher(port: int, creds: Sequence[tuple[str, str]], load: Load, out: mp.Queue) -> None:  # type: ignore[type-arg]
    clients = []
    for kiosk_id, password in creds:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=kiosk_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        c.username_pw_set(kiosk_id, password)
        c.max_inflight_messages_set(200)
        c.connect("127.0.0.1", port, keepalive=60)
        c.loop_start()
        clients.append(c)
    models = [_KioskModel(k, i) for i, (k, _) in enumerate(creds)]
    time.sleep(0.5)  # all CONNACKs in
    infos = []
    started = time.monotonic()
    sent = 0
    for i in range(load.per_kiosk):
        seq = load.seq_start + i
        for c, m in zip(clients, models, strict=True):
            ts = int(time.time() * 1000)
            msg = m.heartbeat(seq, ts) if i % load.hb_every == 0 else m.next_event(seq, ts)
            infos.append(c.publish(topic_for(msg), encode(msg), qos=1))
            sent += 1
            if load.rate:  # evenly spaced, as a fleet's kiosks are, not in bursts
                ahead = sent / load.rate - (time.monotonic() - started)
                if ahead > 0.001:
                    time.sleep(ahead)
    for info in infos:
        info.wait_for_publish(60)
    elapsed = time.monotonic() - started
    for c in clients:
        c.disconnect()
        c.loop_stop()
    out.put((sent, elapsed))


def start_publisher(
    port: int, creds: Sequence[kiosks.KioskCredentials], load: Load
) -> tuple[mp.Process, mp.Queue]:  # type: ignore[type-arg]
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(
        target=_publisher, args=(port, [(c.kiosk_id, c.password) for c in creds], load, out)
    )
    proc.start()
    return proc, out


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(values: Sequence[float]) -> str:
    return (
        f"p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms, "
        f"mean {statistics.fmean(values) if values else float('nan'):.1f} ms"
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def paired_medians(
    first: Callable[[], Any], second: Callable[[], Any], repeat: int
) -> tuple[float, float, Any, Any]:
    """Medians of `first` and `second` run in turns, so that load from elsewhere on the
    machine falls on both alike."""
    a, b = first(), second()  # warm-up
    times_a, times_b = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        a = first()
        times_a.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = second()
        times_b.append(time.perf_counter() - t)
    return statistics.median(times_a), statistics.median(times_b), a, b
