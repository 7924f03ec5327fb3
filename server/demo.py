"""`umbrella demo`: the whole system in one process on the embedded default.

SQLite file under data_dir, the in-process amqtt broker with the same password/ACL files as
production, in-process shared state, one bridge, the scheduler, the HTTP API, and a
simulated fleet running a churn scenario. The terminal shows kiosks coming online and what
they report; each start-up step shows its progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime

import uvicorn
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table
from sqlalchemy import case, func, select

from device_sim.credentials import KioskCredential, read_credentials
from device_sim.fleet import Fleet
from device_sim.scenarios import Churn, run_scenario
from server.app import create_app, make_broker_sync
from server.bridge.runner import Bridge
from server.broker.embedded import EmbeddedBroker
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.migrate import upgrade
from server.core.net import free_port_or
from server.core.shared_state import make_shared_state
from server.kiosks import service as kiosks
from server.models import Kiosk, KioskState, Slot, SlotStatus
from server.partners import service as partners
from server.runtime import attach_bridge, wechat_hooks
from server.scheduler.runner import build_scheduler

DEMO_CENTER = (30.2590, 120.1300)  # Hangzhou, West Lake


class _EventLog(logging.Handler):
    """Keeps the last lines the bridge logs (kiosks online/offline, rejects) for the screen."""

    def __init__(self, size: int = 14) -> None:
        super().__init__(logging.DEBUG)
        self.lines: deque[str] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        self.lines.append(f"{stamp} {record.getMessage()}")


def run_demo(
    settings: Settings, *, kiosks: int, heartbeat_s: float, duration_s: float | None
) -> int:
    console = Console()
    settings = settings.model_copy(update={"embedded_broker": True})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    events = _EventLog(size=16)
    for name in ("server.bridge", "server.kiosk_state", "server.scheduler"):
        logging.getLogger(name).addHandler(events)
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).propagate = False
    logging.getLogger("server.bridge.uplinks").setLevel(logging.DEBUG)

    with ExitStack() as stack:
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
        )
        with progress:
            step = progress.add_task("Migrating the SQLite database", total=1)
            upgrade(settings.db_url)
            progress.update(step, completed=1)

            db = Database(settings.db_url)
            stack.callback(db.dispose)
            step = progress.add_task(f"Registering {kiosks} simulated kiosks", total=kiosks)
            creds = _provision(settings, db, kiosks, lambda n: progress.update(step, completed=n))

            step = progress.add_task("Starting the embedded MQTT broker (amqtt)", total=1)
            mqtt_port = free_port_or(settings.mqtt_port)
            settings = settings.model_copy(update={"mqtt_port": mqtt_port})
            broker = EmbeddedBroker(
                "127.0.0.1", mqtt_port, settings.broker_password_file, settings.broker_acl_file
            )
            broker.start()
            stack.callback(broker.stop)
            progress.update(step, completed=1)

            step = progress.add_task("Starting bridge, scheduler and API", total=3)
            state = make_shared_state(settings)  # in-process: one instance per process
            bridge = Bridge(settings, db=db, shared_state=state, shared=False)
            bridge.start()
            stack.callback(bridge.stop)
            progress.update(step, advance=1)
            scheduler = build_scheduler(settings, db, state)
            scheduler.start()
            stack.callback(scheduler.shutdown)
            progress.update(step, advance=1)
            api_port = free_port_or(settings.api_port)
            stack.enter_context(_serve_api(settings, db, bridge, api_port))
            progress.update(step, advance=1)

            # the kiosks' seq/conn live in "flash" across demo runs: the database keeps
            # (kiosk, seq) receipts and would drop a restarted count as duplicates
            fleet = Fleet(
                creds,
                "127.0.0.1",
                mqtt_port,
                heartbeat_s=heartbeat_s,
                seed=7,
                flash_file=settings.data_dir / "sim-flash.json",
            )
            step = progress.add_task("Kiosks connecting", total=len(creds))
            fleet.start()
            stack.callback(fleet.stop)
            deadline = time.monotonic() + 60
            while fleet.online_count() < len(creds) and time.monotonic() < deadline:
                progress.update(step, completed=fleet.online_count())
                time.sleep(0.2)
            progress.update(step, completed=fleet.online_count())

        stop = threading.Event()
        # A gentle churn: about one event per kiosk a minute, 5 % of them short drops.
        # (`Churn()`'s defaults, 5 events/s with a fifth drops, are a load test: one drop a
        # second, which made 20 demo kiosks reconnect ~18 times in 25 s.)
        scenario = Churn(
            duration_s=duration_s if duration_s is not None else float("inf"),
            rate=max(0.5, len(creds) / 60),
            drop_share=0.05,
        )
        churn = threading.Thread(
            target=run_scenario,
            args=(fleet, scenario),
            kwargs={"stop": stop},
            daemon=True,
            name="demo-churn",
        )
        churn.start()
        header = (
            f"API http://127.0.0.1:{api_port}/docs   MQTT 127.0.0.1:{mqtt_port} (embedded amqtt)"
            f"   DB {settings.db_url}   Ctrl-C stops"
        )
        started = time.monotonic()
        try:
            with Live(console=console, refresh_per_second=2, screen=False) as live:
                while duration_s is None or time.monotonic() - started < duration_s:
                    live.update(_screen(header, db, bridge, fleet, events))
                    time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            console.print("stopping…")
    return 0


def _provision(
    settings: Settings, db: Database, count: int, on_progress: object
) -> list[KioskCredential]:
    """Reuse the demo fleet from an earlier run, or register it; write the broker files."""
    csv_path = settings.data_dir / "sim-credentials.csv"
    creds: list[KioskCredential] = read_credentials(csv_path) if csv_path.exists() else []
    with db.transaction() as session:
        registered = set(session.scalars(select(Kiosk.id)))
        creds = [c for c in creds if c.kiosk_id in registered][:count]
        missing = count - len(creds)
        if missing > 0:
            partner = partners.find_or_register(
                session, name="Demo City Partner", region="Hangzhou"
            )
            new = kiosks.seed_fleet(
                session, missing, partner_id=partner.id, lat=DEMO_CENTER[0], lon=DEMO_CENTER[1]
            )
            creds += [KioskCredential(c.kiosk_id, c.password) for c in new]
        kiosks.export_broker_files(session, settings)
    kiosks.write_provisioning_csv(
        csv_path, [kiosks.KioskCredentials(c.kiosk_id, c.password) for c in creds]
    )
    if callable(on_progress):
        on_progress(len(creds))
    return creds


@contextmanager
def _serve_api(settings: Settings, db: Database, bridge: Bridge, port: int) -> Iterator[None]:
    app = create_app(
        settings,
        db=db,
        hooks=[attach_bridge(bridge, make_broker_sync(db, settings)), *wechat_hooks(settings)],
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.api_host, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _screen(header: str, db: Database, bridge: Bridge, fleet: Fleet, events: _EventLog) -> Group:
    umbrellas = func.sum(case((Slot.status == SlotStatus.UMBRELLA, 1), else_=0))
    empty = func.sum(case((Slot.status == SlotStatus.EMPTY, 1), else_=0))
    faults = func.sum(case((Slot.status == SlotStatus.FAULT, 1), else_=0))
    with db.transaction() as session:
        rows = session.execute(
            select(
                KioskState.kiosk_id,
                KioskState.online,
                KioskState.firmware,
                KioskState.signal_dbm,
                KioskState.last_seen_at,
                umbrellas,
                empty,
                faults,
            )
            .join(Slot, Slot.kiosk_id == KioskState.kiosk_id)
            .group_by(KioskState.kiosk_id)
            .order_by(KioskState.last_seen_at.desc())
            .limit(12)
        ).all()
        online = session.scalar(select(func.count()).where(KioskState.online)) or 0
        total = session.scalar(select(func.count()).select_from(KioskState)) or 0
    stats = bridge.dispatcher.stats()
    table = Table(title=f"kiosks online {online}/{total} (most recently heard first)")
    for col in (
        "kiosk",
        "online",
        "firmware",
        "signal",
        "umbrellas",
        "empty",
        "faults",
        "last seen",
    ):
        table.add_column(col)
    now = clock.now()
    for kid, on, fw, sig, seen, u, e, f in rows:
        ago = f"{(now - seen).total_seconds():.0f} s ago" if seen else "never"
        table.add_row(
            kid,
            "yes" if on else "[red]no",
            fw or "-",
            f"{sig} dBm" if sig is not None else "-",
            str(u),
            str(e),
            str(f),
            ago,
        )
    fs = fleet.stats()
    counters = (
        f"bridge: {', '.join(f'{k} {v}' for k, v in sorted(stats.items()))}\n"
        f"simulator: connected {fs.connected}/{fs.total}, published {fs.published}, "
        f"buffered {fs.buffered}, reconnects {fs.reconnects}"
    )
    return Group(
        Panel(header, title="umbrella demo"),
        table,
        Panel(counters, title="counters"),
        Panel(
            "\n".join(events.lines) or "(waiting for kiosks)",
            title="what kiosks report (bridge log)",
        ),
    )
