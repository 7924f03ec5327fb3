"""bench/playlist_compile: compiling 48-hour playlists for 10,000 kiosks (issue 4).

    .venv/bin/python -m bench.playlist_compile [--kiosks 10000] [--bookings 400]

A throw-away PostgreSQL database (schema from the models), bulk-loaded with COPY: kiosks in
two time zones (Asia/Shanghai, and 10% in Asia/Kolkata, a half-hour zone) with six 10-s
spots per loop, 30% of them open 07-23 only; advertisers with
approved creatives (one to three per booking); and confirmed bookings on a few hundred
kiosks each, 1-2 spots per loop in one or two dayparts (some across midnight) for the next
four days, never more than the loop holds.

Then the scheduler's job as it runs (`playlists.jobs.compile_and_push`, no MQTT publisher):
every kiosk never compiled, so all of them are due; a run compiles at most
`playlist_max_per_run` (2,000), most urgent first, in chunks of `playlist_chunk` kiosks per
transaction, each a `playlist_ahead_h` window (72 h; compiled again when less than 54 h are
left, so 48 h are always ahead). Printed: the total time, kiosks per second, and the
longest run against the interval the scheduler runs the job at (target: well inside it,
at most half). Also the cost of a run
that finds nothing due (what every other run costs), and of one booking changing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from bench._infra import bench_database
from server.config import Settings
from server.core.db import Database
from server.playlists import jobs, rules

ZONES = ("Asia/Shanghai",) * 9 + ("Asia/Kolkata",)
DAYPARTS = ("07-10", "17-20", "07-10,17-20", "11-14", "20-24", "22-02", "00-24")


def _hours(zone: str, day0: datetime, days: int, dayparts: str) -> list[datetime]:
    """UTC starts of the local hours of `dayparts` on `days` days from `day0` (local)."""
    tz = ZoneInfo(zone)
    out = []
    for d in range(days):
        midnight = datetime(day0.year, day0.month, day0.day, tzinfo=tz) + timedelta(days=d)
        for part in dayparts.split(","):
            a, b = (int(x) for x in part.split("-"))
            for h in range(a, b if a < b else b + 24):
                out.append((midnight + timedelta(hours=h)).astimezone(UTC))
    return out


def _copy(cur: Any, table: str, rows: Sequence[tuple[object, ...]]) -> None:
    """One COPY at a time: a connection runs one COPY, the next waits for it to end."""
    with cur.copy(f"COPY {table} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def load(db: Database, *, kiosks: int, bookings: int, now: datetime, seed: int = 4) -> int:
    """Returns the number of reservation rows."""
    rng = random.Random(seed)
    ids = [f"K{i:06d}" for i in range(kiosks)]
    zone = {k: rng.choice(ZONES) for k in ids}
    hours_open = {k: (7, 23) if rng.random() < 0.3 else (0, 24) for k in ids}
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(
            "INSERT INTO partners (name, region, created_at) VALUES ('Bench', 'Bench', now())"
        )
        with cur.copy(
            "COPY kiosks (id, name, partner_id, lat, lon, address, venue_type, timezone,"
            " slot_count, loop_seconds, spot_seconds, open_hour, close_hour,"
            " mqtt_password_hash, created_at) FROM STDIN"
        ) as copy:
            for k in ids:
                o, c = hours_open[k]
                copy.write_row(
                    (k, k, 1, 31.2, 121.4, "-", "105", zone[k], 22, 60, 10, o, c, "$7$x", now)
                )
        advertisers = max(1, bookings // 8)
        with cur.copy(
            "COPY advertisers (id, name, billing_mode, lost_spot_policy, created_at) FROM STDIN"
        ) as copy:
            for a in range(1, advertisers + 1):
                copy.write_row((a, f"Advertiser {a}", "monthly", "make_good", now))
        creative_id = 0
        sold: dict[tuple[str, datetime], int] = {}
        day0 = now.astimezone(ZoneInfo("Asia/Shanghai")).replace(hour=0)
        with cur.copy(
            "COPY creatives (id, advertiser_id, title, body_text, declared_text, kind,"
            " duration_ms, media_url, sha256, status, created_at, updated_at) FROM STDIN"
        ) as cc:
            plan = []
            for b in range(1, bookings + 1):
                adv = rng.randint(1, advertisers)
                mine = []
                for _ in range(rng.randint(1, 3)):
                    creative_id += 1
                    sha = f"{creative_id:064x}"
                    url = f"https://media.example.com/api/v1/media/{sha}"
                    title = f"C{creative_id}"
                    cc.write_row(
                        (
                            creative_id,
                            adv,
                            title,
                            "",
                            "",
                            "image",
                            10000,
                            url,
                            sha,
                            "approved",
                            now,
                            now,
                        )
                    )
                    mine.append(creative_id)
                plan.append((b, adv, mine, rng.choice(DAYPARTS), rng.choice((1, 1, 2))))
        cur.execute("SELECT setval(pg_get_serial_sequence('creatives', 'id'), %s)", (creative_id,))
        first_day = day0.date()
        _copy(
            cur,
            "bookings (id, advertiser_id, name, status, spots_per_loop, start_date, end_date,"
            " dayparts, selection, price_fen, confirmed_at, revision, created_at, updated_at)",
            [
                (
                    b,
                    adv,
                    f"B{b}",
                    "confirmed",
                    spots,
                    first_day,
                    first_day,
                    parts,
                    "{}",
                    0,
                    now,
                    1,
                    now,
                    now,
                )
                for b, adv, _mine, parts, spots in plan
            ],
        )
        _copy(
            cur,
            "booking_creatives (booking_id, creative_id)",
            [(b, c) for b, _adv, mine, _parts, _spots in plan for c in mine],
        )
        on_kiosks: list[tuple[object, ...]] = []
        reserved: list[tuple[object, ...]] = []
        for b, _adv, _mine, parts, spots in plan:
            for k in rng.sample(ids, min(kiosks, rng.randint(50, 166))):
                o, c = hours_open[k]
                tz = ZoneInfo(zone[k])
                hs = [
                    h
                    for h in _hours(zone[k], day0, 4, parts)
                    if o <= h.astimezone(tz).hour < c and sold.get((k, h), 0) + spots <= 6
                ]
                if not hs:
                    continue
                on_kiosks.append((b, k, 4, 1000))
                for h in hs:
                    sold[(k, h)] = sold.get((k, h), 0) + spots
                    reserved.append((b, k, h, spots))
        _copy(cur, "booking_kiosks (booking_id, kiosk_id, days, price_fen)", on_kiosks)
        _copy(cur, "reservations (booking_id, kiosk_id, starts_at, spots)", reserved)
        rows = len(reserved)
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return rows


def main(argv: Sequence[str] = ()) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kiosks", type=int, default=10_000)
    p.add_argument("--bookings", type=int, default=400)
    args = p.parse_args(list(argv))
    settings = Settings()
    interval = settings.playlist_compile_interval_s
    # Ten past the hour: the runs below, minutes apart, stay in one local hour in both zones
    # (Shanghai's hours start at :00 UTC, Kolkata's at :30); a new hour is a new window.
    now = datetime.now(UTC).replace(minute=10, second=0, microsecond=0)
    with bench_database("umb_bench_pl") as url:
        db = Database(url)
        t = time.perf_counter()
        rows = load(db, kiosks=args.kiosks, bookings=args.bookings, now=now)
        print(
            f"loaded {args.kiosks:,} kiosks, {args.bookings} confirmed bookings, "
            f"{rows:,} reservation rows ({time.perf_counter() - t:.1f} s)"
        )
        rules.compile_hour.cache_clear()
        # As the scheduler runs it: every kiosk is due, a run compiles at most
        # `playlist_max_per_run` of them, the next run (one interval later) the rest.
        # (The clock stands still here, so kiosks compiled by the first run are due again
        # in the second, within CHANGE_SLACK of their bookings: count runs until every kiosk
        # has its first version.)
        runs: list[jobs.CompileSummary] = []
        while sum(r.new_versions for r in runs) < args.kiosks and len(runs) < 10:
            runs.append(jobs.compile_and_push(db, None, now, settings=settings))
        if any(r.failed for r in runs) or sum(r.new_versions for r in runs) != args.kiosks:
            raise RuntimeError(f"compile did not cover every kiosk: {runs}")
        with db.engine.connect() as c:
            avg_hours = c.execute(
                text(
                    "SELECT avg(extract(epoch FROM ends_at - starts_at)) / 3600"
                    " FROM playlist_versions"
                )
            ).scalar_one()
            blocks, spots = c.execute(
                text(
                    "SELECT avg(json_array_length(body::json -> 'blocks')), avg(spot_count)"
                    " FROM playlist_versions"
                )
            ).one()
        # The bookings were made just before the first compile (within CHANGE_SLACK): their
        # kiosks are looked at once more, a minute later; after that nothing is due.
        later = now + 2 * jobs.CHANGE_SLACK
        settle = [jobs.compile_and_push(db, None, later, settings=settings)]
        while settle[-1].deferred and len(settle) < 10:
            settle.append(jobs.compile_and_push(db, None, later, settings=settings))
        idle = jobs.compile_and_push(db, None, later + timedelta(seconds=1), settings=settings)
        with db.engine.begin() as c:
            c.execute(
                text("UPDATE bookings SET updated_at = :t WHERE id = 1"),
                {"t": later + timedelta(seconds=2)},
            )
        one = jobs.compile_and_push(db, None, later + timedelta(seconds=3), settings=settings)
        if any(r.new_versions for r in settle) or idle.due or one.new_versions:
            raise RuntimeError(f"unchanged inputs made new versions: {settle} {idle} {one}")
        db.dispose()
    total = sum(r.compile_s for r in runs)
    longest = max(r.compile_s for r in runs)
    ratio = longest / interval
    print(
        f"\ncompile, every kiosk due at once ({settings.playlist_ahead_h}-hour window, "
        f"{avg_hours:.0f} h covered on average, {blocks:.1f} blocks / {spots:.0f} spots each):"
    )
    print(
        f"  {args.kiosks:,} kiosks in {total:6.2f} s = {args.kiosks / total:,.0f} kiosks/s,"
        f" over {len(runs)} run(s) of at most {settings.playlist_max_per_run:,} kiosks"
    )
    print(
        f"  longest run {longest:6.2f} s = {ratio:.2f} x the {interval} s interval the scheduler"
        f" runs the job at ({'OK: well inside' if ratio <= 0.5 else 'MISSED'})"
    )
    print(f"  a run with nothing due:        {idle.compile_s * 1000:8.0f} ms (due: {idle.due})")
    print(
        f"  a run after one booking changed: {one.compile_s * 1000:6.0f} ms"
        f" ({one.due} kiosks due, {one.new_versions} new versions)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
