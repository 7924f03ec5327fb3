"""bench/ad_availability: screen-loop availability for 1,000 kiosks x 30 days x 24 hours
(issue 4), then (when bench/playlist_compile.py exists) compiling 48-hour playlists for
10,000 kiosks.

    .venv/bin/python -m bench.ad_availability [--kiosks 1000] [--days 30] [--runs 5]

A throw-away PostgreSQL database with the schema of the models, bulk-loaded with INSERT ...
SELECT generate_series: `--kiosks` kiosks (Asia/Shanghai, open all day), a loop hour for
every kiosk and hour of `--days` days, and six bookings of five advertisers holding parts of
them (mornings everywhere, whole days on half the fleet, evenings, nights across midnight,
the first half of the month on every other kiosk, lunch on the other half): about 830,000
reservation rows at the default size. `sold` is the sum of the reservations, as reserving
keeps it.

Baseline, in the same run and on the same rows: the bare SQL aggregate
`SELECT kiosk_id, starts_at, sum(spots), array_agg(booking_id) FROM reservations WHERE
kiosk_id = ANY(:ids) AND starts_at BETWEEN :lo AND :hi GROUP BY kiosk_id, starts_at`,
fetched to Python. Then `bookings.service.availability` plus building the endpoint's
response (`AvailabilityOut.from_domain`), as an operator (every booking by id) and as an
advertiser (own bookings by id, the rest as counts); JSON encoding is shown on its own.
Each figure is the best of `--runs`. Target (issue 4): availability within 2 x the aggregate.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text

from bench._infra import bench_database
from server.bookings import service
from server.bookings.schemas import AvailabilityOut
from server.core.db import Database

TARGET_RATIO = 2.0
REGION = "Bench"

#: (advertiser, first kiosk, last kiosk, kiosk step, first day, last day, local start hour,
#:  hours, spots): the bookings holding parts of the loops.
BOOKINGS = (
    (1, 0, 999_999, 1, 0, 999, 7, 3, 2),  # mornings 07-10 on every kiosk, every day
    (2, 0, 499, 1, 0, 999, 0, 24, 1),  # all day on the first 500 kiosks
    (3, 250, 749, 1, 0, 999, 17, 5, 2),  # evenings 17-22
    (1, 0, 999_999, 2, 0, 14, 0, 24, 1),  # the first 15 days on every other kiosk
    (4, 0, 999_999, 1, 10, 999, 22, 4, 1),  # nights 22-02 from day 10 on
    (5, 500, 999_999, 1, 0, 999, 11, 3, 1),  # lunch 11-14 on the second half
)


def load(db: Database, *, kiosks: int, days: int, start: date, now: datetime) -> int:
    """Kiosks, loop hours and reservations; returns the number of reservation rows."""
    first_hour = datetime(start.year, start.month, start.day, tzinfo=UTC) - timedelta(hours=8)
    with db.engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO partners (id, name, region, created_at) VALUES (1, 'Bench', :r, :now)"
            ),
            {"r": REGION, "now": now},
        )
        c.execute(
            text(
                "INSERT INTO kiosks (id, name, partner_id, lat, lon, address, venue_type,"
                " timezone, slot_count, loop_seconds, spot_seconds, open_hour, close_hour,"
                " mqtt_password_hash, created_at)"
                " SELECT 'K' || lpad(i::text, 6, '0'), 'Bench ' || i, 1,"
                " 31.2 + (i % 100) * 0.001, 121.4 + (i / 100) * 0.001, 'Bench site',"
                " (ARRAY['105','303','205','801','1001','807'])[1 + i % 6], 'Asia/Shanghai',"
                " 22, 60, 10, 0, 24, 'x', :now FROM generate_series(0, CAST(:n AS int) - 1) AS i"
            ),
            {"n": kiosks, "now": now},
        )
        for a in range(1, 6):
            c.execute(
                text(
                    "INSERT INTO advertisers (id, name, billing_mode, lost_spot_policy,"
                    " created_at) VALUES (:a, 'Advertiser ' || :a, 'prepaid', 'credit', :now)"
                ),
                {"a": a, "now": now},
            )
        for b, (adv, *_rest) in enumerate(BOOKINGS, start=1):
            c.execute(
                text(
                    "INSERT INTO bookings (id, advertiser_id, name, status, spots_per_loop,"
                    " start_date, end_date, dayparts, selection, price_fen, revision,"
                    " created_at, updated_at) VALUES (:b, :a, 'Bench ' || :b, 'confirmed', 1,"
                    " :s, :e, '00-24', '{}', 0, 1, :now, :now)"
                ),
                {
                    "b": b,
                    "a": adv,
                    "s": start,
                    "e": start + timedelta(days=days - 1),
                    "now": now,
                },
            )
        for b, (_, k0, k1, kstep, d0, d1, h0, hours, spots) in enumerate(BOOKINGS, start=1):
            c.execute(
                text(
                    "INSERT INTO reservations (booking_id, kiosk_id, starts_at, spots)"
                    " SELECT :b, 'K' || lpad(k::text, 6, '0'),"
                    " :t0 + make_interval(hours => d * 24 + :h0 + h), :spots"
                    " FROM generate_series(CAST(:k0 AS int), CAST(:k1 AS int),"
                    " CAST(:kstep AS int)) AS k,"
                    " generate_series(CAST(:d0 AS int), CAST(:d1 AS int)) AS d,"
                    " generate_series(0, CAST(:hours AS int) - 1) AS h"
                    # a night daypart of the last day runs past the month: not loaded
                    " WHERE d * 24 + :h0 + h < :days * 24"
                ),
                {
                    "b": b,
                    "k0": k0,
                    "k1": min(k1, kiosks - 1),
                    "kstep": kstep,
                    "d0": d0,
                    "d1": min(d1, days - 1),
                    "h0": h0,
                    "hours": hours,
                    "spots": spots,
                    "t0": first_hour,
                    "days": days,
                },
            )
        c.execute(
            text(
                "INSERT INTO loop_hours (kiosk_id, starts_at, capacity, sold)"
                " SELECT 'K' || lpad(k::text, 6, '0'), :t0 + make_interval(hours => h), 6, 0"
                " FROM generate_series(0, :n - 1) AS k, generate_series(0, :days * 24 - 1) AS h"
            ),
            {"n": kiosks, "days": days, "t0": first_hour},
        )
        c.execute(
            text(
                "UPDATE loop_hours lh SET sold = g.spots FROM (SELECT kiosk_id, starts_at,"
                " sum(spots) AS spots FROM reservations GROUP BY kiosk_id, starts_at) g"
                " WHERE lh.kiosk_id = g.kiosk_id AND lh.starts_at = g.starts_at"
            )
        )
        rows = int(c.execute(text("SELECT count(*) FROM reservations")).scalar_one())
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE"))
    return rows


BARE = (
    "SELECT kiosk_id, starts_at, sum(spots), array_agg(booking_id) FROM reservations"
    " WHERE kiosk_id = ANY(:ids) AND starts_at BETWEEN :lo AND :hi"
    " GROUP BY kiosk_id, starts_at"
)


def best(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def compile_figures() -> None:
    """bench/playlist_compile (48-hour playlists for 10,000 kiosks), when it is there."""
    if importlib.util.find_spec("bench.playlist_compile") is None:
        print("\nbench.playlist_compile is not there yet: no playlist compile figure")
        return
    print()
    importlib.import_module("bench.playlist_compile").main()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kiosks", type=int, default=1000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--skip-compile", action="store_true", help="availability figures only")
    args = p.parse_args(argv)
    now = datetime.now(UTC)  # real time is fine here: nothing is compared against the clock
    start = now.date() + timedelta(days=7)
    end = start + timedelta(days=args.days - 1)
    with bench_database("umb_bench_ad") as url:
        db = Database(url)
        t = time.perf_counter()
        rows = load(db, kiosks=args.kiosks, days=args.days, start=start, now=now)
        print(
            f"loaded {args.kiosks} kiosks x {args.days} days x 24 h = "
            f"{args.kiosks * args.days * 24:,} loop hours, {rows:,} reservation rows "
            f"({time.perf_counter() - t:.1f} s)"
        )
        ids = [f"K{i:06d}" for i in range(args.kiosks)]
        lo = datetime(start.year, start.month, start.day, tzinfo=UTC) - timedelta(hours=8)
        hi = lo + timedelta(hours=args.days * 24 - 1)
        selection = service.Selection(regions=(REGION,))

        def bare() -> int:
            with db.transaction() as s:
                return len(s.execute(text(BARE), {"ids": ids, "lo": lo, "hi": hi}).all())

        def avail(advertiser_id: int | None) -> Callable[[], AvailabilityOut]:
            def run() -> AvailabilityOut:
                with db.transaction() as s:
                    a = service.availability(s, advertiser_id, selection, start, end, "00-24")
                    return AvailabilityOut.from_domain(a)

            return run

        bare_s, groups = best(args.runs, bare)
        ops_s, ops_out = best(args.runs, avail(None))
        adv_s, adv_out = best(args.runs, avail(1))
        json_s, body = best(args.runs, lambda: ops_out.model_dump_json())
        cells = sum(len(k.sold) for k in ops_out.kiosks)
        if cells != args.kiosks * args.days * 24:
            raise RuntimeError(f"availability answered {cells} kiosk-hours")
        sold = sum(sum(k.sold) for k in ops_out.kiosks)
        held = sum(sum(sum(v) for v in k.bookings.values()) for k in ops_out.kiosks)
        others = sum(sum(k.held_by_others or []) for k in adv_out.kiosks)
        if sold != held or others >= sold:
            raise RuntimeError("availability does not add up")
        db.dispose()
        ratio = ops_s / bare_s
        print(f"\nbest of {args.runs} runs:")
        print(f"  bare SQL aggregate ({groups:,} kiosk-hours)   {bare_s * 1000:8.0f} ms")
        print(
            f"  availability, operator (every booking)  {ops_s * 1000:8.0f} ms"
            f"   = {ratio:.2f} x the aggregate (target <= {TARGET_RATIO:g} x)"
        )
        print(
            f"  availability, advertiser (own + counts) {adv_s * 1000:8.0f} ms"
            f"   = {adv_s / bare_s:.2f} x the aggregate"
        )
        print(
            f"  + JSON encoding of the operator answer  {json_s * 1000:8.0f} ms "
            f"({len(body):,} bytes)"
        )
        print(f"  {'OK' if ratio <= TARGET_RATIO else 'MISSED'}: ratio {ratio:.2f}")
    if not args.skip_compile:
        compile_figures()


if __name__ == "__main__":
    main()
