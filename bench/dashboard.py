"""bench/dashboard: a partner's station dashboard data over a month of history (issue 5).

    .venv/bin/python -m bench.dashboard [--kiosks 2000] [--others 500] [--days 30] [--repeat 9]

A throw-away PostgreSQL database migrated to head (`bench._infra.bench_database`),
bulk-loaded with INSERT ... SELECT generate_series: the bench partner's `--kiosks` kiosks and
another partner's `--others` (so that scoping has something to leave out), 22 slots each,
a month (`--days`) of rentals at ~8 a kiosk a day (returned elsewhere; 1 in 33 forfeited
after 7 days), the delivery tally of three bookings a kiosk a day (`delivery_days`: what the
dashboard reads for ad plays, not the plays table), and open alerts on a tenth of the kiosks.

Measured in the same run, medians of `--repeat` runs in turns after one warm-up:
- bare: one hand-written SQL statement of the same rows (each kiosk with its state, slot
  counts, rentals and forfeitures today and this week, ad plays today, open alerts) through
  the DBAPI cursor, `fetchall()` and nothing else.
- service: `dashboard.service.dashboard()` in its own transaction plus the response model
  and its JSON: what GET /api/v1/partner/dashboard pays minus the HTTP framing.
- http: the endpoint through the whole stack (FastAPI TestClient), for information.

Target (issue 5): the service within 2 x the bare query. At the end, `bench.gbfs_station_status`
runs too (the GBFS half of bench/dashboard), so one command prints both.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from bench._infra import bench_database, paired_medians
from server.app import create_app
from server.config import Settings
from server.core.db import Database
from server.dashboard import rules, service
from server.dashboard.schemas import DashboardOut
from server.models import Partner

TARGET_RATIO = 2.0
TOKEN = "bench-operator"
RIDERS = 20_000
RENTALS_PER_KIOSK_DAY = 8

LOAD = [
    """INSERT INTO kiosks (id, name, partner_id, lat, lon, address, venue_type, timezone,
           slot_count, loop_seconds, spot_seconds, open_hour, close_hour, mqtt_password_hash,
           created_at)
       SELECT 'K' || lpad(g::text, 6, '0'), 'Bench kiosk ' || g,
           CASE WHEN g <= :kiosks THEN :partner ELSE :other END,
           31.0 + (g % 100) * 0.004, 121.2 + (g / 100) * 0.004, 'Bench road ' || g, '105',
           'Asia/Shanghai', 22, 60, 10, 0, 24, '$7$unused', :now - interval '90 days'
       FROM generate_series(1, :total) g""",
    """INSERT INTO kiosk_states (kiosk_id, online, conn, last_seen_at, online_changed_at,
           max_seq, snapshot_seq)
       SELECT 'K' || lpad(g::text, 6, '0'), g % 20 <> 0, 1,
           :now - (g % 600) * interval '1 second', :now - (g % 5000) * interval '1 minute', 0, 0
       FROM generate_series(1, :total) g""",
    """INSERT INTO slots (kiosk_id, slot_no, status, tag, fault_code, applied_seq, observed_at,
           updated_at)
       SELECT 'K' || lpad(g::text, 6, '0'), s,
           CASE WHEN h % 20 = 0 THEN 'FAULT' WHEN h % 3 = 0 THEN 'EMPTY' ELSE 'UMBRELLA' END,
           CASE WHEN h % 3 = 0 OR h % 20 = 0 THEN NULL
                ELSE 'E2' || lpad(g::text, 6, '0') || lpad(s::text, 2, '0') END,
           CASE WHEN h % 20 = 0 THEN 1 END, 0, :now - interval '1 hour', :now - interval '1 hour'
       FROM generate_series(1, :total) g
       CROSS JOIN generate_series(1, 22) s
       CROSS JOIN LATERAL (SELECT (g * 31 + s * 17 + (g * s) % 7) AS h) hash""",
    """INSERT INTO riders (openid, created_at)
       SELECT 'bench-openid-' || g, :now - interval '60 days' FROM generate_series(1, :riders) g""",
    """INSERT INTO deposit_payments (rider_id, out_trade_no, idempotency_key, amount_fen, status,
           created_at)
       SELECT g, 'DEP' || lpad(g::text, 12, '0'), 'dep-' || g, 3000, 'HELD',
           :now - interval '60 days'
       FROM generate_series(1, :riders) g""",
    # a month of rentals spread evenly over the kiosks and the seconds of the month
    """INSERT INTO rentals (rider_id, idempotency_key, deposit_payment_id, deposit_fen, status,
           kiosk_id, slot_no, attempts, created_at, started_at, deadline_at, returned_at,
           return_kiosk_id, forfeited_at, reminders_sent, updated_at)
       SELECT r, 'rent-' || g, r, 3000,
           CASE WHEN g % 33 = 0 AND started + interval '7 days' < :now THEN 'forfeited'
                ELSE 'returned' END,
           'K' || lpad((1 + g % :total)::text, 6, '0'), 1 + g % 22, 1, started, started,
           started + interval '7 days',
           CASE WHEN g % 33 = 0 THEN NULL ELSE started + interval '50 minutes' END,
           CASE WHEN g % 33 = 0 THEN NULL
                ELSE 'K' || lpad((1 + (g * 7) % :total)::text, 6, '0') END,
           CASE WHEN g % 33 = 0 AND started + interval '7 days' < :now
                THEN started + interval '7 days 5 minutes' END,
           0, started
       FROM generate_series(1, :rentals) g
       CROSS JOIN LATERAL (SELECT 1 + g % :riders AS r,
           :now - ((g::bigint * 7919) % (:days * 86400)) * interval '1 second' AS started) x""",
    """INSERT INTO delivery_days (booking_id, kiosk_id, local_date, played, make_good_played)
       SELECT b, 'K' || lpad(g::text, 6, '0'), :today - d, 300 + (g + d + b) % 60, (g + b) % 3
       FROM generate_series(1, :total) g
       CROSS JOIN generate_series(0, :days - 1) d
       CROSS JOIN LATERAL (SELECT unnest(ARRAY[1 + g % 20, 21 + g % 20, 41 + g % 20]) AS b) x""",
    """INSERT INTO alerts (partner_id, kiosk_id, kind, slot_no, message, opened_at)
       SELECT k.partner_id, k.id, 'nearly_empty', 0, 'bench', :now - interval '1 hour'
       FROM kiosks k WHERE right(k.id, 1) = '7'""",
]

#: Indexes on existing tables proposed to the lead (not yet in the models): today's and this
#: week's rentals and forfeitures are range scans instead of reading the whole month.
PROPOSED_INDEXES = [
    "CREATE INDEX ix_rentals_started_at ON rentals (started_at)",
    "CREATE INDEX ix_rentals_forfeited_at ON rentals (forfeited_at) WHERE status = 'forfeited'",
]

#: The dashboard's rows as one plain SQL statement.
BARE = """
WITH scope AS (SELECT id FROM kiosks WHERE partner_id = %(partner)s),
slot_counts AS (
    SELECT s.kiosk_id,
        sum(CASE WHEN s.status = 'UMBRELLA' THEN 1 ELSE 0 END) AS umbrellas,
        sum(CASE WHEN s.status = 'EMPTY' THEN 1 ELSE 0 END) AS empty,
        sum(CASE WHEN s.status = 'FAULT' THEN 1 ELSE 0 END) AS faulty
    FROM slots s JOIN scope ON scope.id = s.kiosk_id GROUP BY s.kiosk_id),
started AS (
    SELECT r.kiosk_id, sum(CASE WHEN r.started_at >= %(day)s THEN 1 ELSE 0 END) AS today,
        count(*) AS week
    FROM rentals r JOIN scope ON scope.id = r.kiosk_id
    WHERE r.started_at >= %(week)s GROUP BY r.kiosk_id),
forfeited AS (
    SELECT r.kiosk_id, sum(CASE WHEN r.forfeited_at >= %(day)s THEN 1 ELSE 0 END) AS today,
        count(*) AS week
    FROM rentals r JOIN scope ON scope.id = r.kiosk_id
    WHERE r.status = 'forfeited' AND r.forfeited_at >= %(week)s GROUP BY r.kiosk_id),
plays AS (
    SELECT d.kiosk_id, sum(d.played + d.make_good_played) AS today
    FROM delivery_days d JOIN scope ON scope.id = d.kiosk_id
    WHERE d.local_date = %(today)s GROUP BY d.kiosk_id),
open_alerts AS (
    SELECT kiosk_id, count(*) AS n FROM alerts
    WHERE closed_at IS NULL AND partner_id = %(partner)s GROUP BY kiosk_id)
SELECT k.id, k.name, k.lat, k.lon, coalesce(st.online, false), st.last_seen_at,
    coalesce(c.umbrellas, 0), coalesce(c.empty, 0), coalesce(c.faulty, 0),
    coalesce(sr.today, 0), coalesce(sr.week, 0), coalesce(f.today, 0), coalesce(f.week, 0),
    coalesce(p.today, 0), coalesce(a.n, 0)
FROM kiosks k
LEFT JOIN kiosk_states st ON st.kiosk_id = k.id
LEFT JOIN slot_counts c ON c.kiosk_id = k.id
LEFT JOIN started sr ON sr.kiosk_id = k.id
LEFT JOIN forfeited f ON f.kiosk_id = k.id
LEFT JOIN plays p ON p.kiosk_id = k.id
LEFT JOIN open_alerts a ON a.kiosk_id = k.id
WHERE k.partner_id = %(partner)s
ORDER BY k.id
"""


def load(db: Database, args: argparse.Namespace, now: datetime) -> tuple[int, int]:
    """Loads the history; returns (rentals, delivery rows)."""
    with db.transaction() as s:
        bench, other = (
            Partner(name="Bench Partner", region="Bench", created_at=now),
            Partner(name="Other Partner", region="Other", created_at=now),
        )
        s.add_all([bench, other])
        s.flush()
        ids = bench.id, other.id
        s.execute(
            text(
                "INSERT INTO advertisers (name, billing_mode, lost_spot_policy, created_at)"
                " VALUES ('Bench Ads', 'prepaid', 'make_good', :now)"
            ),
            {"now": now},
        )
        s.execute(
            text(
                """INSERT INTO bookings (advertiser_id, name, status, spots_per_loop,
                       start_date, end_date, dayparts, selection, price_fen, revision,
                       created_at, updated_at)
                   SELECT 1, 'Bench booking ' || g, 'confirmed', 1, :today - 40, :today + 10,
                       'all', '{}', 0, 1, :now, :now
                   FROM generate_series(1, 60) g"""
            ),
            {"now": now, "today": rules.periods(now, "Asia/Shanghai").today},
        )
    total = args.kiosks + args.others
    rentals = total * args.days * RENTALS_PER_KIOSK_DAY
    params = {
        "partner": ids[0],
        "other": ids[1],
        "kiosks": args.kiosks,
        "total": total,
        "riders": RIDERS,
        "rentals": rentals,
        "days": args.days,
        "now": now,
        "today": rules.periods(now, "Asia/Shanghai").today,
    }
    with db.engine.begin() as c:
        for sql in LOAD:
            c.execute(text(sql), params)
        if args.proposed_indexes:
            for sql in PROPOSED_INDEXES:
                c.execute(text(sql))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM (ANALYZE)"))
    return ids[0], rentals


def bare_rows(db: Database, partner_id: int, now: datetime) -> list[tuple[Any, ...]]:
    p = rules.periods(now, "Asia/Shanghai")
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(
            BARE,
            {
                "partner": partner_id,
                "day": p.day_start,
                "week": p.week_start,
                "today": p.today,
            },
        )
        rows = list(cur.fetchall())
        raw.rollback()
        return rows
    finally:
        raw.close()


def served(db: Database, partner_id: int, now: datetime) -> DashboardOut:
    with db.transaction() as session:
        out = DashboardOut.of(service.dashboard(session, partner_id, now))
    out.model_dump_json()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kiosks", type=int, default=2_000)
    ap.add_argument("--others", type=int, default=500)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument(
        "--proposed-indexes",
        action="store_true",
        help="create the rentals indexes proposed for the dashboard (PROPOSED_INDEXES) first",
    )
    ap.add_argument("--skip-gbfs", action="store_true", help="do not run bench.gbfs_station_status")
    args = ap.parse_args(argv)
    now = datetime.now(UTC)  # the loaded history's "now"; passed to the service explicitly

    with bench_database("umb_bench_dash") as url, TemporaryDirectory() as tmp:
        db = Database(url)
        try:
            t = time.perf_counter()
            partner_id, rentals = load(db, args, now)
            print(
                f"loaded {args.kiosks + args.others:,} kiosks ({args.kiosks:,} the bench "
                f"partner's), {rentals:,} rentals over {args.days} days, "
                f"{3 * args.days * (args.kiosks + args.others):,} delivery days "
                f"in {time.perf_counter() - t:.1f} s"
            )
            bare_s, service_s, rows, out = paired_medians(
                lambda: bare_rows(db, partner_id, now),
                lambda: served(db, partner_id, now),
                args.repeat,
            )
            check(rows, out, args.kiosks)
            signal_s = signal_median(db, partner_id, args.repeat)
            settings = Settings(data_dir=Path(tmp), database_url=url, operator_token=TOKEN)
            with TestClient(create_app(settings, db=db)) as client:
                http_s, size = http_median(client, partner_id, args.repeat)
        finally:
            db.dispose()

    t = out.totals
    print(
        f"dashboard: {len(out.kiosks):,} kiosks, {t.rentals_week:,} rentals and "
        f"{t.forfeitures_week:,} forfeitures this week, {t.ad_plays_today:,} ad plays today, "
        f"{t.open_alerts:,} open alerts; {size / 1e6:.2f} MB of JSON; median of {args.repeat}"
    )
    print(f"  bare SQL of the same rows        {bare_s * 1000:8.1f} ms")
    print(
        f"  service + response model + JSON  {service_s * 1000:8.1f} ms   "
        f"{service_s / bare_s:5.2f} x bare  (target <= {TARGET_RATIO:g} x)"
    )
    print(
        f"  GET /api/v1/partner/dashboard    {http_s * 1000:8.1f} ms   "
        f"{http_s / bare_s:5.2f} x bare"
    )
    print(f"  stream change signal (per poll)  {signal_s * 1000:8.1f} ms")
    met = service_s <= TARGET_RATIO * bare_s
    print(f"target {'met' if met else 'NOT met'}: service {service_s / bare_s:.2f} x bare")

    if not args.skip_gbfs:
        print()
        try:
            from bench import gbfs_station_status
        except ImportError as exc:
            print(f"bench.gbfs_station_status not importable: {exc}")
        else:
            gbfs_station_status.main([])
    return 0


def check(rows: list[tuple[Any, ...]], out: DashboardOut, kiosks: int) -> None:
    """The service's tiles are the bare query's rows, field by field."""
    if len(rows) != kiosks or len(out.kiosks) != kiosks:
        raise RuntimeError(f"{len(out.kiosks)} tiles, {len(rows)} bare rows, {kiosks} kiosks")
    for row, k in zip(rows, out.kiosks, strict=True):
        got = (
            k.id,
            k.name,
            k.lat,
            k.lon,
            k.online,
            k.last_seen_at,
            k.umbrellas,
            k.empty_slots,
            k.faulty_slots,
            k.rentals_today,
            k.rentals_week,
            k.forfeitures_today,
            k.forfeitures_week,
            k.ad_plays_today,
            k.open_alerts,
        )
        if got != tuple(row):
            raise RuntimeError(f"tile {got} differs from the bare row {row}")


def signal_median(db: Database, partner_id: int, repeat: int) -> float:
    """What each open dashboard stream costs every poll while nothing changes."""
    times = []
    for _ in range(repeat + 1):
        t = time.perf_counter()
        with db.transaction() as session:
            service.change_signal(session, partner_id)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def http_median(client: TestClient, partner_id: int, repeat: int) -> tuple[float, int]:
    def get() -> int:
        r = client.get(
            f"/api/v1/partner/dashboard?partner_id={partner_id}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        if r.status_code != 200:
            raise RuntimeError(f"dashboard answered {r.status_code}: {r.text[:200]}")
        return len(r.content)

    size = get()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        size = get()
        times.append(time.perf_counter() - t)
    return statistics.median(times), size


if __name__ == "__main__":
    raise SystemExit(main())
