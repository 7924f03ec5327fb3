"""bench/gbfs_station_status: the GBFS station_status feed for 10,000 kiosks (issue 5).

    .venv/bin/python -m bench.gbfs_station_status [--kiosks 10000] [--repeat 9]

A throw-away PostgreSQL database migrated to head (`bench._infra.bench_database`), bulk-loaded with
INSERT ... SELECT generate_series: one partner, `--kiosks` kiosks with 22 slots each
(umbrellas, empty slots, faulty slots with and without a jammed umbrella), most online, some
offline, some never seen.

Measured in the same run, each the median of `--repeat` runs after one warm-up (bare and cold
in turns, so that load from elsewhere on the machine falls on both alike):

- bare: the SQL of the same rows (each kiosk with its state and slot counts, one GROUP BY
  query) through the DBAPI cursor, `fetchall()` and nothing else: the floor any build pays.
- cold: `GbfsFeeds.build("station_status")`, what a request pays once per ttl: the query,
  the rows as stations, JSON serialisation and the store into the cache.
- warm: `GET /gbfs/v3/station_status.json` through the whole HTTP stack (FastAPI TestClient)
  while the cached document is fresh: what every other request pays. Once with the
  in-process cache, and once with Redis (the production shared state) when it is reachable.

Target (issue 5): cold within 2 x bare; the feed is served from a cache never staler than
its ttl (tests/api/test_gbfs_feed.py checks that part).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from urllib.parse import urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import text

from bench._infra import REDIS_URL, bench_database, paired_medians
from server.app import create_app
from server.config import Settings
from server.core.db import Database
from server.core.http import AppServices
from server.core.shared_state import MemorySharedState, RedisSharedState
from server.gbfs.service import CACHE_KEY_PREFIX, GbfsFeeds
from server.models import Partner

TARGET_RATIO = 2.0

LOAD = [
    """INSERT INTO kiosks (id, name, partner_id, lat, lon, address, venue_type, timezone,
           slot_count, loop_seconds, spot_seconds, open_hour, close_hour, mqtt_password_hash,
           created_at)
       SELECT 'K' || lpad(g::text, 6, '0'), 'Bench kiosk ' || g, :partner,
           31.0 + (g % 100) * 0.004, 121.2 + (g / 100) * 0.004, 'Bench road ' || g, '105',
           'Asia/Shanghai', 22, 60, 10, 0, 24, '$7$unused', :now - interval '90 days'
       FROM generate_series(1, :kiosks) g""",
    # 1 in 20 offline, 1 in 50 never seen (no last_seen_at), the rest online
    """INSERT INTO kiosk_states (kiosk_id, online, conn, last_seen_at, max_seq, snapshot_seq)
       SELECT 'K' || lpad(g::text, 6, '0'), g % 20 <> 0 AND g % 50 <> 0, 1,
           CASE WHEN g % 50 = 0 THEN NULL ELSE :now - (g % 600) * interval '1 second' END,
           0, 0
       FROM generate_series(1, :kiosks) g""",
    # slot states spread by a hash of (kiosk, slot): ~5 % faulty (half with a jammed
    # umbrella), ~1/3 of the rest empty, the others hold an umbrella
    """INSERT INTO slots (kiosk_id, slot_no, status, tag, fault_code, applied_seq)
       SELECT 'K' || lpad(g::text, 6, '0'), s,
           CASE WHEN h % 20 = 0 THEN 'FAULT' WHEN h % 3 = 0 THEN 'EMPTY' ELSE 'UMBRELLA' END,
           CASE WHEN h % 20 = 0 AND h % 40 <> 0 THEN NULL
                WHEN h % 20 <> 0 AND h % 3 = 0 THEN NULL
                ELSE 'E2' || lpad(g::text, 6, '0') || lpad(s::text, 2, '0') END,
           CASE WHEN h % 20 = 0 THEN 1 END, 0
       FROM generate_series(1, :kiosks) g
       CROSS JOIN generate_series(1, 22) s
       CROSS JOIN LATERAL (SELECT (g * 31 + s * 17 + (g * s) % 7) AS h) hash""",
]

#: The rows station_status is made of, as plain SQL.
BARE = """
SELECT k.id, coalesce(st.online, false), coalesce(st.last_seen_at, k.created_at),
    coalesce(c.umbrellas, 0), coalesce(c.empty, 0), coalesce(c.faulty_with_umbrella, 0),
    coalesce(c.faulty_empty, 0)
FROM kiosks k
LEFT JOIN kiosk_states st ON st.kiosk_id = k.id
LEFT JOIN (
    SELECT kiosk_id,
        sum(CASE WHEN status = 'UMBRELLA' THEN 1 ELSE 0 END) AS umbrellas,
        sum(CASE WHEN status = 'EMPTY' THEN 1 ELSE 0 END) AS empty,
        sum(CASE WHEN status = 'FAULT' AND tag IS NOT NULL THEN 1 ELSE 0 END)
            AS faulty_with_umbrella,
        sum(CASE WHEN status = 'FAULT' AND tag IS NULL THEN 1 ELSE 0 END) AS faulty_empty
    FROM slots GROUP BY kiosk_id
) c ON c.kiosk_id = k.id
ORDER BY k.id
"""


def load(db: Database, kiosks: int, now: datetime) -> None:
    with db.transaction() as s:
        partner = Partner(name="Bench Partner", region="Bench", created_at=now)
        s.add(partner)
        s.flush()
        partner_id = partner.id
    with db.engine.begin() as c:
        for sql in LOAD:
            c.execute(text(sql), {"partner": partner_id, "kiosks": kiosks, "now": now})
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM (ANALYZE)"))


def median_s(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    result = run()  # warm-up: plans, connections, caches
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def bare_rows(db: Database) -> list[tuple[Any, ...]]:
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(BARE)
        rows = list(cur.fetchall())
        raw.rollback()
        return rows
    finally:
        raw.close()


def redis_up() -> bool:
    parts = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return True
    except OSError:
        return False


def warm_http(settings: Settings, db: Database, shared: Any, repeat: int) -> tuple[float, int]:
    svc = AppServices(settings=settings, db=db, shared_state=shared)
    with TestClient(create_app(services=svc)) as client:

        def get() -> int:
            r = client.get("/gbfs/v3/station_status.json")
            if r.status_code != 200:
                raise RuntimeError(f"station_status answered {r.status_code}: {r.text[:200]}")
            return len(r.content)

        return median_s(get, repeat)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kiosks", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args(argv)
    now = datetime.now(UTC)  # wall clock for the loaded rows only; the feed uses core.clock

    with bench_database("umb_bench_gbfs") as url, TemporaryDirectory() as tmp:
        # a ttl long enough that the warm runs never meet an expiry
        settings = Settings(data_dir=Path(tmp), database_url=url, gbfs_status_ttl_s=3600)
        db = Database(url)
        try:
            t = time.perf_counter()
            load(db, args.kiosks, now)
            print(
                f"loaded {args.kiosks:,} kiosks, {22 * args.kiosks:,} slots "
                f"in {time.perf_counter() - t:.1f} s"
            )

            feeds = GbfsFeeds(settings, db, MemorySharedState())
            bare_s, cold_s, rows, served = paired_medians(
                lambda: bare_rows(db), lambda: feeds.build("station_status"), args.repeat
            )

            stations = json.loads(served.body)["data"]["stations"]
            if len(stations) != len(rows) or len(rows) != args.kiosks:
                raise RuntimeError(f"{len(stations)} stations, {len(rows)} bare rows")
            for row, station in zip(rows, stations, strict=True):
                got = (
                    station["station_id"],
                    station["num_vehicles_available"],
                    station["num_docks_available"],
                    station["num_vehicles_disabled"],
                    station["num_docks_disabled"],
                )
                if got != (row[0], row[3], row[4], row[5], row[6]):
                    raise RuntimeError(f"station {got} differs from the bare row {row}")

            warm_s, size = warm_http(settings, db, MemorySharedState(), args.repeat)
            redis_s: float | None = None
            if redis_up():
                # a namespace of this run's own, emptied at the end: the document describes a
                # database that is dropped in a moment
                shared = RedisSharedState(REDIS_URL, namespace=f"umb-bench-{uuid.uuid4().hex[:8]}")
                try:
                    redis_s, _ = warm_http(settings, db, shared, args.repeat)
                finally:
                    shared.cache_set(CACHE_KEY_PREFIX + "station_status", b"", 1)
                    shared.close()
        finally:
            db.dispose()

    renting = sum(1 for s in stations if s["is_renting"])
    print(
        f"station_status: {len(stations):,} stations ({renting:,} renting), "
        f"{size / 1e6:.2f} MB of JSON; median of {args.repeat} runs"
    )
    print(f"  bare SQL of the same rows      {bare_s * 1000:8.1f} ms")
    print(
        f"  cold build through the service {cold_s * 1000:8.1f} ms   "
        f"{cold_s / bare_s:5.2f} x bare  (target <= {TARGET_RATIO:g} x)"
    )
    print(
        f"  warm, HTTP, in-process cache   {warm_s * 1000:8.1f} ms   {warm_s / bare_s:5.2f} x bare"
    )
    if redis_s is not None:
        print(
            f"  warm, HTTP, Redis cache        {redis_s * 1000:8.1f} ms   "
            f"{redis_s / bare_s:5.2f} x bare"
        )
    else:
        print(f"  warm, HTTP, Redis cache        skipped: nothing listens at {REDIS_URL}")
    met = cold_s <= TARGET_RATIO * bare_s
    print(f"target {'met' if met else 'NOT met'}: cold build {cold_s / bare_s:.2f} x bare")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
