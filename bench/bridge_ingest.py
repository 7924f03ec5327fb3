"""bench/bridge_ingest: uplinks through Mosquitto into the bridge, state in PostgreSQL + Redis.

    .venv/bin/python -m bench.bridge_ingest [--kiosks 100] [--per-kiosk 200]

Phases, all on one private Mosquitto (project passwd/ACL) and one PostgreSQL database:
  A. baseline: a bare paho subscriber that only decodes, the load published flat out;
  B. one bridge (shared subscription, manual acks after commit), the same load flat out;
  C. one bridge at a paced rate (half of B's), for latency when not saturated, and C' the
     bare subscriber at that same rate as its latency baseline;
  D. two bridge processes on one shared subscription: split, CPU per 10,000 messages.
Rates are messages received / (last one handled - first one received). Latency is from the
kiosk timestamp (set when the publisher sends) to decode (A) or to the commit (B, C).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from bench._infra import (
    REDIS_URL,
    Load,
    bench_database,
    cpu_seconds,
    percentile,
    private_mosquitto,
    provision,
    start_publisher,
    summary,
)
from firmware_protocol import decode_uplink, topics
from server.bridge.connection import Incoming
from server.bridge.runner import Bridge
from server.config import Settings
from server.core.db import Database
from server.models import SlotEventRecord, UplinkReceipt

TIMEOUT_S = 300.0


class Phase:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first: float | None = None
        self.last = 0.0
        self.latencies: list[float] = []
        self.done = threading.Event()
        self.lock = threading.Lock()

    def seen(self, payload_ts_ms: int, first_received: float) -> None:
        now = time.time()
        with self.lock:
            if self.first is None or first_received < self.first:
                self.first = first_received
            self.last = now
            self.count += 1
            self.latencies.append(now * 1000 - payload_ts_ms)
            if self.count >= self.expected:
                self.done.set()

    @property
    def rate(self) -> float:
        return self.count / max(1e-9, self.last - (self.first or self.last))


def bare_subscriber(settings: Settings, phase: Phase) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv311)
    c.username_pw_set(settings.mqtt_username, settings.mqtt_password)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        received = time.time()
        decoded = decode_uplink(msg.topic, bytes(msg.payload))
        phase.seen(decoded.ts_ms, received)

    ready = threading.Event()
    c.on_message = on_message
    c.on_subscribe = lambda *_: ready.set()
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    c.subscribe(topics.UPLINK_FILTER, qos=1)
    ready.wait(10)
    return c


def instrumented_bridge(settings: Settings, phase_ref: list[Phase]) -> Bridge:
    """A bridge whose acknowledgements (sent right after each commit) are timed."""
    bridge = Bridge(settings, shared=True, client_id="bench-bridge")
    connection = bridge.connection
    real_ack = connection.ack

    def timed_ack(item: Incoming) -> None:
        real_ack(item)
        ts = cbor2.loads(item.payload)[4]  # the envelope's ts_ms; already validated upstream
        phase_ref[0].seen(ts, item.received_ms / 1000)

    connection.ack = timed_ack  # type: ignore[method-assign]
    return bridge


def own_cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def run_load(port: int, creds: list, load: Load, phase: Phase) -> tuple[int, float]:  # type: ignore[type-arg]
    proc, out = start_publisher(port, creds, load)
    sent, elapsed = out.get(timeout=TIMEOUT_S)
    proc.join(30)
    if not phase.done.wait(TIMEOUT_S):
        print(f"  !! only {phase.count}/{phase.expected} handled within {TIMEOUT_S:.0f} s")
    return sent, elapsed


def receipts(db: Database) -> tuple[int, int]:
    with db.transaction() as s:
        return (
            s.scalar(select(func.count()).select_from(UplinkReceipt)) or 0,
            s.scalar(select(func.count()).select_from(SlotEventRecord)) or 0,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kiosks", type=int, default=100)
    ap.add_argument("--per-kiosk", type=int, default=200, help="messages per kiosk per phase")
    args = ap.parse_args(argv)
    n = args.kiosks * args.per_kiosk
    redis.Redis.from_url(REDIS_URL).flushdb()

    with tempfile.TemporaryDirectory() as tmp, bench_database() as db_url:
        work = Path(tmp)
        settings = Settings(
            data_dir=work,
            database_url=db_url,
            redis_url=REDIS_URL,
            embedded_broker=False,
            mqtt_password="bench-cloud-password",
            bridge_id="bench-bridge",
        )
        creds = provision(settings, args.kiosks)
        with private_mosquitto(settings, work) as port:
            settings = settings.model_copy(update={"mqtt_port": port})
            db = Database(settings.db_url)
            print(
                f"bridge_ingest: {args.kiosks} kiosks x {args.per_kiosk} messages per phase "
                f"({n:,} messages, half heartbeats with 22-slot snapshots, half slot events)"
            )

            # A. bare subscriber
            bare = Phase(n)
            client = bare_subscriber(settings, bare)
            cpu = own_cpu_s()
            sent, pub_s = run_load(port, creds, Load(args.per_kiosk, seq_start=1), bare)
            bare_cpu = (own_cpu_s() - cpu) / n * 10_000
            client.disconnect()
            client.loop_stop()
            print(
                f"A bare subscriber (decode only): {bare.rate:,.0f} msg/s "
                f"(publisher {sent / pub_s:,.0f} msg/s); latency {summary(bare.latencies)}; "
                f"{bare_cpu:.2f} CPU s per 10,000 messages"
            )

            # B. one bridge, flat out
            ref = [Phase(n)]
            bridge = instrumented_bridge(settings, ref)
            bridge.start()
            bridge.connection.wait_ready(10)
            base = receipts(db)
            seq = 1 + args.per_kiosk
            cpu = own_cpu_s()
            run_load(port, creds, Load(args.per_kiosk, seq_start=seq), ref[0])
            bridge_cpu = (own_cpu_s() - cpu) / n * 10_000
            one = ref[0]
            got = receipts(db)
            lost_b = n - (got[0] - base[0])
            print(
                f"B one bridge (PostgreSQL + Redis): {one.rate:,.0f} msg/s; latency "
                f"{summary(one.latencies)}; lost {lost_b}; "
                f"ratio to bare {one.rate / bare.rate:.2f} (target >= 0.80); "
                f"{bridge_cpu:.2f} CPU s per 10,000 messages "
                f"({bridge_cpu / bare_cpu:.1f} x the bare subscriber's CPU)"
            )

            # C. one bridge, paced at half its flat-out rate
            paced_rate = max(100.0, one.rate / 2)
            ref[0] = Phase(n)
            seq += args.per_kiosk
            run_load(port, creds, Load(args.per_kiosk, seq_start=seq, rate=paced_rate), ref[0])
            paced = ref[0]
            got_c = receipts(db)
            lost_c = n - (got_c[0] - got[0])
            print(
                f"C one bridge paced at {paced_rate:,.0f} msg/s: "
                f"latency {summary(paced.latencies)}; lost {lost_c}"
            )
            bridge.stop(retire=True)  # phase D's bridges take over the shared subscription

            # C'. the bare subscriber at the same paced rate: the latency baseline
            bare_paced = Phase(n)
            client = bare_subscriber(settings, bare_paced)
            seq += args.per_kiosk
            run_load(port, creds, Load(args.per_kiosk, seq_start=seq, rate=paced_rate), bare_paced)
            client.disconnect()
            client.loop_stop()
            print(
                f"C' bare subscriber paced at {paced_rate:,.0f} msg/s: "
                f"latency {summary(bare_paced.latencies)}; bridge p99 minus bare p99: "
                f"{percentile(paced.latencies, 99) - percentile(bare_paced.latencies, 99):.0f} ms"
            )
            per_core = 10_000 / bridge_cpu  # messages per CPU second
            print(
                f"  one bridge process on one core: about {per_core:,.0f} msg/s, i.e. "
                f"{per_core * 60:,.0f} kiosks at one message a minute; measured here with the "
                f"publisher and Mosquitto on the same 2 cores: {one.rate * 60:,.0f} kiosks"
            )

            # D. two bridge processes on one shared subscription
            seq += args.per_kiosk
            procs, logs = [], []
            env = dict(
                os.environ,
                UMB_DATABASE_URL=db_url,
                UMB_REDIS_URL=REDIS_URL,
                UMB_MQTT_HOST="127.0.0.1",
                UMB_MQTT_PORT=str(port),
                UMB_MQTT_PASSWORD=settings.mqtt_password,
                UMB_EMBEDDED_BROKER="false",
                UMB_DATA_DIR=str(work),
            )
            for i in (1, 2):
                log = (work / f"bridge-{i}.log").open("w")
                logs.append(log)
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "server.cli", "bridge"],
                        env=dict(env, UMB_BRIDGE_ID=f"bench-proc-{i}"),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(
                "subscribed to" in (work / f"bridge-{i}.log").read_text() for i in (1, 2)
            ):
                time.sleep(0.1)
            r = redis.Redis.from_url(REDIS_URL)
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            before = receipts(db)
            t0 = time.monotonic()
            proc, out = start_publisher(port, creds, Load(args.per_kiosk, seq_start=seq))
            out.get(timeout=TIMEOUT_S)
            proc.join(30)
            while receipts(db)[0] - before[0] < n and time.monotonic() - t0 < TIMEOUT_S:
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
            after = receipts(db)
            cpu1 = [cpu_seconds(p.pid) for p in procs]

            def counter(i: int, name: str) -> int:
                return int(r.hget("umb:counters", f"bridge.bench-proc-{i}.{name}") or 0)

            settle = time.monotonic() + 15  # counters are bumped just after each commit
            while time.monotonic() < settle and (
                sum(counter(i, "applied") + counter(i, "duplicates") for i in (1, 2)) < n
            ):
                time.sleep(0.1)
            applied = [
                int(r.hget("umb:counters", f"bridge.bench-proc-{i}.applied") or 0) for i in (1, 2)
            ]
            dups = [
                int(r.hget("umb:counters", f"bridge.bench-proc-{i}.duplicates") or 0)
                for i in (1, 2)
            ]
            for p in procs:
                p.terminate()
                p.wait(20)
            for log in logs:
                log.close()
            lost_d = n - (after[0] - before[0])
            for i in (1, 2):
                problems = [
                    line
                    for line in (work / f"bridge-{i}.log").read_text().splitlines()
                    if " WARNING " in line or " ERROR " in line
                ]
                if problems:
                    print(f"  bridge-{i}: {len(problems)} warnings/errors, first: {problems[0]}")
            if lost_d:
                for i in (1, 2):
                    tail = (work / f"bridge-{i}.log").read_text().splitlines()[-15:]
                    print(f"  bridge-{i} log tail:\n    " + "\n    ".join(tail))
            combined = (after[0] - before[0]) / elapsed
            print(
                f"D two bridge processes, shared subscription: {combined:,.0f} msg/s combined "
                f"(publish start to last commit); lost {lost_d}; applied per process "
                f"{applied[0]:,} / {applied[1]:,} (duplicates {dups[0]} / {dups[1]}; "
                f"applied twice: {sum(applied) - (after[0] - before[0])})"
            )
            for i in (0, 1):
                share = applied[i] or 1
                print(
                    f"  process {i + 1}: {cpu1[i] - cpu0[i]:.2f} CPU s, "
                    f"{(cpu1[i] - cpu0[i]) / share * 10_000:.2f} CPU s per 10,000 messages"
                )
            print(
                f"  slot events recorded in all phases: {after[1]:,}; "
                f"p99 one-bridge latency {percentile(one.latencies, 99):.0f} ms"
            )
            db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
