"""`umbrella`: run the whole system on its embedded default, or each process on its own.

umbrella demo [--kiosks N] [--riders N]
                                everything in one process: SQLite, amqtt, the WeChat
                                stand-in, simulated kiosks and riders
umbrella migrate                Alembic upgrade head on UMB_DATABASE_URL
umbrella api [--host --port]    the HTTP API (uvicorn)
umbrella bridge                 one MQTT bridge process (run several: shared subscription)
umbrella scheduler              the APScheduler process
umbrella sim ...                the kiosk simulator (same as `umbrella-sim`)
umbrella kiosks seed ...        register a simulated fleet, write its provisioning CSV
umbrella broker-files           write Mosquitto's password file, ACL and conf
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from server.config import Settings, get_settings

log = logging.getLogger("umbrella")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
    )


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from server.core.migrate import upgrade

    upgrade(settings.db_url)
    log.info("database at head: %s", _redact(settings.db_url))
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.runtime import api_hooks

    app = create_app(settings, hooks=api_hooks(settings))
    uvicorn.run(app, host=args.host or settings.api_host, port=args.port or settings.api_port)
    return 0


def cmd_bridge(settings: Settings, _args: argparse.Namespace) -> int:
    from server.bridge.runner import run_bridge

    run_bridge(settings)
    return 0


def cmd_scheduler(settings: Settings, _args: argparse.Namespace) -> int:
    from server.scheduler.runner import run_scheduler

    run_scheduler(settings)
    return 0


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from server.core.db import Database
    from server.kiosks import service as kiosks
    from server.models import Kiosk
    from server.partners import service as partners

    db = Database(settings.db_url)
    try:
        with db.transaction() as session:
            existing = session.scalar(select(func.count()).select_from(Kiosk)) or 0
            if args.if_empty and existing:
                log.info("%d kiosks already registered; nothing seeded", existing)
                return 0
            partner = partners.find_or_register(session, name=args.partner, region=args.region)
            creds = kiosks.seed_fleet(
                session, args.count, partner_id=partner.id, lat=args.lat, lon=args.lon
            )
        kiosks.write_provisioning_csv(Path(args.credentials_out), creds)
        log.info("registered %d kiosks; credentials in %s", len(creds), args.credentials_out)
    finally:
        db.dispose()
    return 0


def cmd_broker_files(settings: Settings, args: argparse.Namespace) -> int:
    from server.broker.mosquitto import MosquittoConfOptions, write_mosquitto_conf
    from server.core.db import Database
    from server.kiosks import service as kiosks

    db = Database(settings.db_url)
    try:
        with db.transaction() as session:
            files = kiosks.export_broker_files(
                session,
                settings,
                pid_file=Path(args.reload_pid) if args.reload_pid else None,
                mode=int(args.mode, 8),
            )
    finally:
        db.dispose()
    conf = settings.data_dir / "broker" / "mosquitto.conf"
    write_mosquitto_conf(
        conf,
        files.password_file,
        files.acl_file,
        MosquittoConfOptions(port=args.port, host=args.host),
    )
    log.info("wrote %s, %s and %s", files.password_file, files.acl_file, conf)
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from server.demo import run_demo

    if args.riders < 0 or args.rider_pace <= 0:
        log.error("--riders must be >= 0 and --rider-pace > 0")
        return 2
    return run_demo(
        settings,
        kiosks=args.kiosks,
        heartbeat_s=args.heartbeat_s,
        duration_s=args.duration,
        riders=args.riders,
        rider_pace=args.rider_pace,
    )


def cmd_sim(_settings: Settings, args: argparse.Namespace) -> int:
    from device_sim.cli import main as sim_main

    return sim_main(args.sim_args)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="umbrella", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run everything in one process on the embedded default")
    d.add_argument("--kiosks", type=int, default=40, help="simulated kiosks (default 40)")
    d.add_argument(
        "--heartbeat-s",
        type=float,
        default=10.0,
        help="simulated heartbeat interval (default 10 s so the demo moves)",
    )
    d.add_argument(
        "--riders",
        type=int,
        default=20,
        help="simulated riders at a time, using the rider API over HTTP (default 20; 0: none)",
    )
    d.add_argument(
        "--rider-pace",
        type=float,
        default=1.0,
        help="time compression of riders' dwell times: 2 = twice as fast (default 1: "
        "a few seconds between trips, 5-20 s with an umbrella)",
    )
    d.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    d.set_defaults(func=cmd_demo)

    sub.add_parser("migrate", help="upgrade the database schema").set_defaults(func=cmd_migrate)

    a = sub.add_parser("api", help="serve the HTTP API")
    a.add_argument("--host")
    a.add_argument("--port", type=int)
    a.set_defaults(func=cmd_api)

    sub.add_parser("bridge", help="run one MQTT bridge process").set_defaults(func=cmd_bridge)
    sub.add_parser("scheduler", help="run the scheduler").set_defaults(func=cmd_scheduler)

    s = sub.add_parser("sim", help="the kiosk simulator (umbrella-sim)", add_help=False)
    s.add_argument("sim_args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_sim)

    k = sub.add_parser("kiosks", help="kiosk registry tasks")
    ksub = k.add_subparsers(dest="kiosks_command", required=True)
    seed = ksub.add_parser("seed", help="register a simulated fleet and write its credentials")
    seed.add_argument("--count", type=int, default=200)
    seed.add_argument("--partner", default="Demo City Partner")
    seed.add_argument("--region", default="Hangzhou")
    seed.add_argument("--lat", type=float, default=30.2590)
    seed.add_argument("--lon", type=float, default=120.1300)
    seed.add_argument("--credentials-out", default="var/sim-credentials.csv")
    seed.add_argument("--if-empty", action="store_true", help="do nothing if kiosks exist")
    seed.set_defaults(func=cmd_seed)

    b = sub.add_parser("broker-files", help="write Mosquitto's password file, ACL and conf")
    b.add_argument("--host", default="0.0.0.0")
    b.add_argument("--port", type=int, default=1883)
    b.add_argument("--reload-pid", help="SIGHUP the Mosquitto with this pid file afterwards")
    b.add_argument(
        "--mode",
        default="600",
        help="file mode (octal) of the password and ACL files; 644 when Mosquitto runs as "
        "another user, as in docker-compose (the files hold hashes, never passwords)",
    )
    b.set_defaults(func=cmd_broker_files)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "demo":
        _setup_logging(args.verbose)
    settings = get_settings()
    result: int = args.func(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
