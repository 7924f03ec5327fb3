"""bench/sim_fleet: how many kiosks one simulator process carries, through the project's
Mosquitto config (a password and an ACL per kiosk).

    .venv/bin/python -m bench.sim_fleet [--kiosks 2000] [--steady-s 30] [--heartbeat-s 10]

Baseline, in the same run and on the same broker: the same number of bare paho clients
connected one after another from one thread (CONNECT/CONNACK only, no kiosk behaviour).
Figures: time until every simulated kiosk is online, the ratio to the baseline's connect time,
and the simulator's CPU while the fleet heartbeats steadily.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench._infra import private_mosquitto, provision
from device_sim.credentials import KioskCredential
from device_sim.fleet import Fleet
from server.config import Settings
from server.core.migrate import upgrade


def cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def bare_connects(port: int, creds: list[KioskCredential]) -> float:
    """Connect every kiosk once with a plain paho client, serially; seconds taken."""
    started = time.monotonic()
    for c in creds:
        done = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=c.kiosk_id, protocol=mqtt.MQTTv311
        )
        client.username_pw_set(c.kiosk_id, c.password)
        client.on_connect = lambda *_, done=done: done.set()
        client.connect("127.0.0.1", port, keepalive=60)
        while not done.is_set():
            client.loop(timeout=0.05)
        client.disconnect()
        client.loop(timeout=0.01)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kiosks", type=int, default=2000)
    ap.add_argument("--steady-s", type=float, default=30.0)
    ap.add_argument("--heartbeat-s", type=float, default=10.0)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(data_dir=work, mqtt_password="bench-cloud-password")
        upgrade(settings.db_url)
        t = time.monotonic()
        creds = [KioskCredential(c.kiosk_id, c.password) for c in provision(settings, args.kiosks)]
        print(
            f"sim_fleet: {args.kiosks} kiosks registered in {time.monotonic() - t:.1f} s "
            f"(SQLite registry, Mosquitto password file and ACL)"
        )
        with private_mosquitto(settings, work) as port:
            bare_s = bare_connects(port, creds)
            print(
                f"baseline: {len(creds)} bare paho connects, one after another: {bare_s:.2f} s "
                f"({len(creds) / bare_s:,.0f}/s)"
            )

            fleet = Fleet(
                creds, "127.0.0.1", port, heartbeat_s=args.heartbeat_s, connect_rate=1000.0
            )
            t0, cpu0 = time.monotonic(), cpu_s()
            fleet.start()
            try:
                fleet.wait_all_online(timeout=120)
                online_s = time.monotonic() - t0
                print(
                    f"simulator: {fleet.online_count()}/{len(creds)} kiosks online in "
                    f"{online_s:.2f} s, {cpu_s() - cpu0:.2f} CPU s; "
                    f"ratio to baseline {online_s / bare_s:.2f}"
                )
                before, cpu1, t1 = fleet.stats(), cpu_s(), time.monotonic()
                time.sleep(args.steady_s)
                after, cpu2, t2 = fleet.stats(), cpu_s(), time.monotonic()
                rate = (after.acked - before.acked) / (t2 - t1)
                print(
                    f"steady {args.steady_s:.0f} s at one heartbeat per {args.heartbeat_s:.0f} s: "
                    f"{rate:,.0f} acknowledged uplinks/s, simulator CPU "
                    f"{(cpu2 - cpu1) / (t2 - t1):.0%} of one core, "
                    f"online {after.connected}/{after.total}, reconnects {after.reconnects}"
                )
            finally:
                fleet.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
