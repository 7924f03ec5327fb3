"""`umbrella demo`: the whole system in one process on the embedded default.

SQLite file under data_dir, the in-process amqtt broker with the same password/ACL files as
production, in-process shared state, one bridge, the scheduler, the HTTP API, the local
WeChat stand-in (login, WeChat Pay), a simulated fleet running a churn scenario, and a crowd
of simulated riders (`device_sim.riders`) who log in, pay the deposit, rent, return and
sometimes withdraw, over HTTP like the mini-program. The terminal shows kiosks coming online,
what they report and what riders do; each start-up step shows its progress.

The API is served over real HTTP and configured exactly as in production (UMB_WECHAT*
settings, key files under data_dir/wechat/), only pointing at the stand-in, so WeChat Pay's
signed notifications reach it over the network. At the end riders holding an umbrella
return it, everything stops, and the summary prints the rider counters and the ledger
invariants check (SPEC §3); the exit code is 1 when an invariant fails or a rider met an
unexpected answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import uvicorn
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from device_sim.advertisers import DemoAdvertiser
from device_sim.credentials import KioskCredential, read_credentials
from device_sim.fleet import Fleet
from device_sim.riders import CrowdStats, Endpoints, RiderCrowd, RiderTiming, describe
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
from server.ledger import service as ledger
from server.ledger.rules import DepositTotals
from server.models import Kiosk, KioskState, PlaylistVersion, Slot, SlotStatus
from server.models.delivery import PlayRecord
from server.partners import service as partners
from server.runtime import attach_bridge, wechat_hooks
from server.scheduler.runner import build_scheduler
from server.wechat.standin import WeChatStandIn

DEMO_CENTER = (30.2590, 120.1300)  # Hangzhou, West Lake
DEMO_TZ = ZoneInfo("Asia/Shanghai")  # the seeded kiosks' time zone
DEMO_RADIUS_M = 3_000.0  # kiosks are seeded, and riders appear, within this of the center
NOTIFY_PATH = "/api/v1/payments/wechat/notify"
REFUND_NOTIFY_PATH = "/api/v1/payments/wechat/refund-notify"
#: How long riders get at the end to return their umbrellas and see payments through.
DRAIN_S = 30.0


class _EventLog(logging.Handler):
    """Keeps the last lines logged (kiosks online/offline, rejects, riders) for the screen."""

    def __init__(self, size: int = 14) -> None:
        super().__init__(logging.DEBUG)
        self.lines: deque[str] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        self.lines.append(f"{stamp} {record.getMessage()}")


class _DemoLogs:
    """Where the demo's loggers write while the live screen runs: the screen's panels, and
    every warning and error with its traceback in `path` (stderr would tear the screen).
    `close()` puts the loggers back as they were."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kiosks = _EventLog(size=10)
        self.riders = _EventLog(size=6)
        # Truncated here, then appended to: uvicorn's dictConfig (the stand-in's server
        # starts after this) closes every handler, and only an "a" handler reopens on emit.
        path.write_text("")
        self.file = logging.FileHandler(path, mode="a", encoding="utf-8", delay=True)
        self.file.setLevel(logging.WARNING)
        self.file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._saved: list[tuple[logging.Logger, list[logging.Handler], int, bool]] = []

    def route(
        self, name: str, panel: logging.Handler, level: int, *, replace: bool = False
    ) -> None:
        logger = logging.getLogger(name)
        self._saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
        if replace:
            logger.handlers = []
        logger.addHandler(panel)
        logger.addHandler(self.file)
        logger.setLevel(level)
        logger.propagate = False

    def close(self) -> None:
        for logger, handlers, level, propagate in reversed(self._saved):
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        self._saved.clear()
        self.file.close()


def run_demo(
    settings: Settings,
    *,
    kiosks: int,
    heartbeat_s: float,
    duration_s: float | None,
    riders: int = 20,
    rider_pace: float = 1.0,
) -> int:
    console = Console()
    settings = settings.model_copy(update={"embedded_broker": True})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logs = _DemoLogs(settings.data_dir / "demo.log")
    for name in ("server.bridge", "server.kiosk_state", "server.scheduler"):
        logs.route(name, logs.kiosks, logging.INFO)
    logs.route("server.bridge.uplinks", logs.kiosks, logging.DEBUG)
    # Everything else that warns (deposits, rentals, payments, the scheduler library, the
    # API's uvicorn) goes to the screen and the log file, not to stderr across the screen.
    logs.route("server", logs.kiosks, logging.WARNING)
    logs.route("apscheduler", logs.kiosks, logging.WARNING)
    logs.route("device_sim.riders", logs.riders, logging.INFO)

    started = time.monotonic()
    with ExitStack() as outer:
        outer.callback(logs.close)
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
                outer.callback(db.dispose)
                step = progress.add_task(f"Registering {kiosks} simulated kiosks", total=kiosks)
                creds = _provision(
                    settings, db, kiosks, lambda n: progress.update(step, completed=n)
                )

                step = progress.add_task("Starting the embedded MQTT broker (amqtt)", total=1)
                mqtt_port = free_port_or(settings.mqtt_port)
                settings = settings.model_copy(update={"mqtt_port": mqtt_port})
                broker = EmbeddedBroker(
                    "127.0.0.1", mqtt_port, settings.broker_password_file, settings.broker_acl_file
                )
                broker.start()
                stack.callback(broker.stop)
                progress.update(step, completed=1)

                step = progress.add_task(
                    "Starting the WeChat stand-in (login, WeChat Pay)", total=1
                )
                standin = WeChatStandIn("127.0.0.1", 0).start()
                stack.callback(standin.stop)
                api_port = free_port_or(settings.api_port)
                settings = _use_standin(settings, standin, api_port)
                progress.update(step, completed=1)

                step = progress.add_task("Starting bridge, scheduler and API", total=3)
                state = make_shared_state(settings)  # in-process: one instance per process
                bridge = Bridge(settings, db=db, shared_state=state, shared=False)
                bridge.start()
                stack.callback(bridge.stop)
                progress.update(step, advance=1)
                scheduler = build_scheduler(settings, db, state, publisher=bridge.connection)
                scheduler.start()
                stack.callback(scheduler.shutdown)
                progress.update(step, advance=1)
                stack.enter_context(_serve_api(settings, db, bridge, api_port))
                # after both uvicorn servers configured their loggers (the stand-in's did so
                # with uvicorn's defaults, which write to stderr)
                logs.route("uvicorn", logs.kiosks, logging.WARNING, replace=True)
                progress.update(step, advance=1)

                # the kiosks' seq/conn live in "flash" across demo runs: the database keeps
                # (kiosk, seq) receipts and would drop a restarted count as duplicates
                fleet = Fleet(
                    creds,
                    "127.0.0.1",
                    mqtt_port,
                    heartbeat_s=heartbeat_s,
                    screen=True,  # the ad screens play their playlists and prove each play
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

            # Riders walk only to the simulated kiosks (the database may hold more, from
            # an earlier, larger run); a kiosk's rider takes the umbrella a second after
            # the lock opens (the fleet's default `RiderAction`).
            crowd = RiderCrowd(
                Endpoints(api=f"http://127.0.0.1:{api_port}", standin=standin.url),
                fleet,
                riders,
                center=DEMO_CENTER,
                area_m=DEMO_RADIUS_M,
                timing=RiderTiming(pace=rider_pace),
            )
            crowd.start()
            stack.callback(crowd.stop, 0.0)  # after an interrupted drain: stop at once

            # An advertiser books the demo kiosks' screens; the next compile (asked for now
            # rather than in playlist_compile_interval_s) pushes their playlists.
            advertiser = DemoAdvertiser(f"http://127.0.0.1:{api_port}")
            stack.callback(advertiser.close)
            campaign = advertiser.run(
                [c.kiosk_id for c in creds], today=clock.now().astimezone(DEMO_TZ).date()
            )
            scheduler.modify_job("compile_playlists", next_run_time=clock.now())

            stop = threading.Event()
            # A gentle churn: about one event per kiosk a minute, 5 % of them short drops.
            # (`Churn()`'s defaults, 5 events/s with a fifth drops, are a load test: one drop
            # a second, which made 20 demo kiosks reconnect ~18 times in 25 s.)
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
                f"API http://127.0.0.1:{api_port}/docs   MQTT 127.0.0.1:{mqtt_port} (embedded "
                f"amqtt)   WeChat stand-in {standin.url}   DB {settings.db_url}\n"
                f"warnings and errors in full: {logs.path}   Ctrl-C stops"
            )
            started = time.monotonic()
            try:
                with Live(console=console, refresh_per_second=2, screen=False) as live:
                    while duration_s is None or time.monotonic() - started < duration_s:
                        live.update(
                            _screen(header, db, bridge, fleet, logs, crowd.stats(), standin)
                        )
                        time.sleep(1)
            except KeyboardInterrupt:
                pass
            finally:
                stop.set()
                console.print("stopping…")
            churn.join(timeout=10)
            with console.status("riders with an umbrella are returning it…"):
                riders_out = crowd.stop(drain_s=DRAIN_S)
            wechat = _wechat_line(standin)
        # everything but the database is stopped here
        with db.transaction() as session:
            problems = ledger.check_invariants(session)
            totals = ledger.deposit_totals(session)
            ads = _ads_line(session, [c.kiosk_id for c in creds])
    elapsed = time.monotonic() - started
    code = _summary(console, elapsed, len(creds), riders, riders_out, wechat, totals, problems)
    console.print(campaign.describe(), highlight=False, soft_wrap=True)
    console.print(ads, highlight=False, soft_wrap=True)
    return code or (1 if campaign.errors else 0)


def _ads_line(session: Session, kiosk_ids: list[str]) -> str:
    """What the screens did: playlists acknowledged by the kiosks, plays proven."""
    acked = session.scalar(
        select(func.count(func.distinct(PlaylistVersion.kiosk_id))).where(
            PlaylistVersion.kiosk_id.in_(kiosk_ids), PlaylistVersion.acked_at.is_not(None)
        )
    )
    unattributed = PlayRecord.booking_id.is_(None)
    plays = {
        bool(house): int(n)
        for house, n in session.execute(
            select(unattributed, func.count())
            .where(PlayRecord.kiosk_id.in_(kiosk_ids))
            .group_by(unattributed)
        )
    }
    booked = plays.get(False, 0)
    note = "" if booked else " (booked hours start at the next full hour)"
    return (
        f"screens: {acked} of {len(kiosk_ids)} kiosks acknowledged a playlist; plays proven: "
        f"{booked} of booked spots, {plays.get(True, 0)} of house content{note}"
    )


def _use_standin(settings: Settings, standin: WeChatStandIn, api_port: int) -> Settings:
    """The production WeChat settings (UMB_WECHAT*), pointing at the stand-in; the key files
    go under data_dir/wechat/ as a deployment would mount them."""
    keys = settings.data_dir / "wechat"
    standin.write_credentials(keys)
    base = f"http://127.0.0.1:{api_port}"
    return settings.model_copy(
        update={
            "wechat_api_base_url": standin.url,
            "wechat_appid": standin.appid,
            "wechat_app_secret": standin.secret,
            "wechatpay_base_url": standin.url,
            "wechatpay_mchid": standin.mchid,
            "wechatpay_merchant_serial": standin.merchant_serial,
            "wechatpay_merchant_private_key_file": str(keys / "merchant_private_key.pem"),
            "wechatpay_apiv3_key": standin.apiv3_key.decode(),
            "wechatpay_platform_serial": standin.platform_serial,
            "wechatpay_platform_public_key_file": str(keys / "platform_public_key.pem"),
            "wechatpay_notify_url": base + NOTIFY_PATH,
            "wechatpay_refund_notify_url": base + REFUND_NOTIFY_PATH,
            "media_base_url": base,
        }
    )


def _wechat_line(standin: WeChatStandIn) -> str:
    return (
        f"WeChat stand-in: {len(standin.orders)} deposit orders, {len(standin.refunds)} "
        f"refunds, {len(standin.sent_messages())} subscribe messages delivered to riders"
    )


def _summary(
    console: Console,
    elapsed_s: float,
    kiosks: int,
    riders: int,
    crowd: CrowdStats,
    wechat: str,
    totals: DepositTotals,
    problems: list[str],
) -> int:
    """Plain lines (no live display): what a script or a test reads after the run."""
    left = [
        t.name
        for t in threading.enumerate()
        if t is not threading.current_thread() and t.is_alive()
    ]
    console.print(
        f"summary: {elapsed_s:.0f} s with {kiosks} kiosks and {riders} riders", highlight=False
    )
    console.print(describe(crowd), highlight=False, soft_wrap=True)
    console.print(f"umbrellas still out at the end: {crowd.riding}", highlight=False)
    console.print(wechat, highlight=False, soft_wrap=True)
    console.print(
        f"ledger (this database, all runs): deposits received {totals.received} fen = held "
        f"{totals.held} + refunded {totals.refunded} + forfeited {totals.forfeited}",
        highlight=False,
        soft_wrap=True,
    )
    if problems:
        console.print("[red]ledger invariants: VIOLATED[/red]")
        for p in problems:
            console.print(f"  {p}", highlight=False, soft_wrap=True)
    else:
        console.print("ledger invariants: ok (check_invariants() == [])", highlight=False)
    console.print(f"threads left: {', '.join(left) or 'none'}", highlight=False, soft_wrap=True)
    return 1 if problems or crowd.unexpected_total else 0


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
                session,
                missing,
                partner_id=partner.id,
                lat=DEMO_CENTER[0],
                lon=DEMO_CENTER[1],
                radius_m=DEMO_RADIUS_M,
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
        # log_config=None: keep the demo's routing of the uvicorn loggers (`_DemoLogs`)
        uvicorn.Config(app, host=settings.api_host, port=port, log_level="warning", log_config=None)
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


def _screen(
    header: str,
    db: Database,
    bridge: Bridge,
    fleet: Fleet,
    logs: _DemoLogs,
    riders: CrowdStats,
    standin: WeChatStandIn,
) -> Group:
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
            .limit(8)
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
        f"buffered {fs.buffered}, reconnects {fs.reconnects}\n"
        f"{_wechat_line(standin)}"
    )
    return Group(
        Panel(header, title="umbrella demo"),
        table,
        Panel(counters, title="counters"),
        Panel(describe(riders), title="riders (over HTTP, like the mini-program)"),
        Panel(
            "\n".join(logs.riders.lines) or "(riders arriving)",
            title="what riders do",
        ),
        Panel(
            "\n".join(logs.kiosks.lines) or "(waiting for kiosks)",
            title="what kiosks report (bridge log), and warnings",
        ),
    )
