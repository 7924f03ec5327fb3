"""`umbrella-sim`: run a simulated fleet or a scenario against an MQTT broker.

    umbrella-sim fleet --credentials kiosks.csv --host 127.0.0.1 --port 1883 \\
        [--heartbeat-s 60] [--screen] [--faults drop=0.01,dup=0.05] [--duration 600]
    umbrella-sim fleet --count 2000 --prefix load   # made-up kiosks, anonymous broker
    umbrella-sim scenario churn --credentials kiosks.csv [--duration 120]

With --credentials, each kiosk's seq and conn counters ("flash") persist in
kiosks.csv.flash.json beside it (or --flash FILE), so a second run continues them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from device_sim.credentials import KioskCredential, generated_credentials, read_credentials
from device_sim.faults import FaultProfile
from device_sim.flash import FlashError
from device_sim.fleet import Fleet, FleetStats
from device_sim.scenarios import SCENARIOS, Progress, Scenario, run_scenario


def _table(stats: FleetStats, rate: float, elapsed: float, cpu: float, last: str) -> Table:
    table = Table(title=f"umbrella-sim  {elapsed:6.0f} s", show_header=False, box=None)
    table.add_column(justify="right", style="bold")
    table.add_column()
    table.add_row("kiosks connected", f"{stats.connected}/{stats.total}")
    table.add_row("published/s", f"{rate:,.0f}  (total {stats.published:,})")
    table.add_row("acked", f"{stats.acked:,}")
    table.add_row("buffered", f"{stats.buffered:,}")
    table.add_row("reconnects", f"{stats.reconnects:,}")
    table.add_row("connect failures", f"{stats.connect_failures} (auth {stats.auth_failures})")
    table.add_row("downlinks", f"{stats.downlinks:,}")
    table.add_row("process CPU", f"{cpu:.0%} of one core")
    if last:
        table.add_row("last step", last)
    return table


def run_fleet(
    credentials: Sequence[KioskCredential],
    host: str = "127.0.0.1",
    port: int = 1883,
    *,
    heartbeat_s: float = 60.0,
    screen: bool = False,
    faults: FaultProfile | None = None,
    duration: float | None = None,
    seed: int = 0,
    connect_rate: float = 250.0,
    scenario: Scenario | None = None,
    console: Console | None = None,
    stop: threading.Event | None = None,
    flash_file: Path | None = None,
) -> FleetStats:
    """Run a fleet until `duration` passes, `stop` is set, the scenario ends (when one
    is given and no duration) or Ctrl-C; show live progress on `console`. Usable
    in-process (e.g. by `umbrella demo`, which passes its own `stop` event).
    `flash_file`: see `Fleet` (raises `FlashError` before starting if it is corrupt)."""
    console = console or Console()
    stop = stop or threading.Event()
    fleet = Fleet(
        credentials,
        host,
        port,
        heartbeat_s=heartbeat_s,
        screen=screen,
        seed=seed,
        faults=faults,
        connect_rate=connect_rate,
        flash_file=flash_file,
    )
    last = [""]
    scenario_thread: threading.Thread | None = None

    def on_progress(p: Progress) -> None:
        last[0] = f"{p.at_s:7.1f} s  {p.description}"

    def play() -> None:
        assert scenario is not None
        run_scenario(fleet, scenario, seed=seed, progress=on_progress, stop=stop)
        if duration is None:
            stop.set()

    start = time.monotonic()
    cpu0 = time.process_time()
    fleet.start()
    try:
        if scenario is not None:
            scenario_thread = threading.Thread(target=play, name="scenario", daemon=True)
            scenario_thread.start()
        prev_pub, prev_t, prev_cpu = 0, start, cpu0
        rate = cpu = 0.0
        stats = fleet.stats()
        with Live(
            _table(stats, 0, 0, 0, ""), console=console, refresh_per_second=2, transient=False
        ) as live:
            while not stop.wait(1.0):
                now = time.monotonic()
                stats = fleet.stats()
                cpu_now = time.process_time()
                rate = (stats.published - prev_pub) / max(1e-9, now - prev_t)
                cpu = (cpu_now - prev_cpu) / max(1e-9, now - prev_t)
                prev_pub, prev_t, prev_cpu = stats.published, now, cpu_now
                live.update(_table(stats, rate, now - start, cpu, last[0]))
                if duration is not None and now - start >= duration:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if scenario_thread is not None:
            scenario_thread.join(5)
        stats = fleet.stats()
        fleet.stop()
    return stats


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="umbrella-sim", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        who = sp.add_mutually_exclusive_group(required=True)
        who.add_argument("--credentials", help="provisioning CSV: kiosk_id,password")
        who.add_argument("--count", type=int, help="made-up kiosks (anonymous brokers only)")
        sp.add_argument("--prefix", default="sim", help="kiosk id prefix with --count")
        sp.add_argument("--host", default=os.environ.get("UMB_MQTT_HOST", "127.0.0.1"))
        sp.add_argument("--port", type=int, default=int(os.environ.get("UMB_MQTT_PORT", "1883")))
        sp.add_argument("--heartbeat-s", type=float, default=60.0)
        sp.add_argument("--screen", action="store_true", help="play the screen (Play records)")
        sp.add_argument("--faults", default="", help="e.g. drop=0.01,dup=0.05,skew=30000")
        sp.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--connect-rate", type=float, default=250.0, help="CONNECTs per second")
        sp.add_argument(
            "--flash",
            metavar="FILE",
            help="keep the kiosks' seq/conn counters in FILE across runs (default with "
            "--credentials: CREDENTIALS.flash.json beside it; none with --count)",
        )
        sp.add_argument("-v", "--verbose", action="store_true")

    common(sub.add_parser("fleet", help="run a fleet of simulated kiosks"))
    sc = sub.add_parser("scenario", help="run a built-in scenario on a fleet")
    sc.add_argument("name", choices=sorted(SCENARIOS))
    common(sc)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    console = Console()
    try:
        faults = FaultProfile.parse(args.faults)
        creds = (
            read_credentials(args.credentials)
            if args.credentials
            else generated_credentials(args.count, args.prefix)
        )
    except (OSError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    if not creds:
        console.print("[red]error:[/red] no kiosks")
        return 2
    scenario = None
    if args.command == "scenario":
        scenario = SCENARIOS[args.name](args.duration or 60.0)
    try:
        stats = run_fleet(
            creds,
            args.host,
            args.port,
            heartbeat_s=args.heartbeat_s,
            screen=args.screen,
            faults=faults,
            duration=args.duration,
            seed=args.seed,
            connect_rate=args.connect_rate,
            scenario=scenario,
            console=console,
            flash_file=_flash_file(args),
        )
    except FlashError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    console.print(
        f"done: {stats.connected}/{stats.total} connected at the end, "
        f"{stats.published:,} published, {stats.buffered:,} buffered, "
        f"{stats.reconnects:,} reconnects"
    )
    return 0


def _flash_file(args: argparse.Namespace) -> Path | None:
    if args.flash:
        return Path(args.flash)
    if args.credentials:
        credentials = Path(args.credentials)
        return credentials.with_name(credentials.name + ".flash.json")
    return None


if __name__ == "__main__":
    sys.exit(main())
