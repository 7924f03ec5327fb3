"""bench/forfeit_sweep: the 7-day forfeiture job over a million rentals (issue 3).

    .venv/bin/python -m bench.forfeit_sweep [--rentals 1000000] [--overdue 100000]
    .venv/bin/python -m bench.forfeit_sweep --quick          # 100,000 rentals, 10,000 overdue
    .venv/bin/python -m bench.forfeit_sweep --write-costs    # + each table's writes alone

A throw-away PostgreSQL database migrated with Alembic (the ledger's triggers included: a
statement-level trigger checks that each INSERT's postings balance). Bulk-loaded with
INSERT ... SELECT generate_series (triggers off while loading, `session_replication_role =
replica`; the ledger invariants are checked right after the load): riders with a held
deposit (payment `held`, ledger account, `deposit_received` entry and its two postings),
umbrellas, a few kiosks, and `--rentals` rentals of which `--overdue` are active and past
their deadline, `--active` active and not yet due, the rest returned.

Baseline, in the same run and on the same rows: the bare SQL update
`UPDATE rentals SET status = 'forfeited', forfeited_at = now() WHERE status = 'active' AND
deadline_at <= now`, run twice in a transaction that is rolled back (the second, warm run
is the baseline), each followed by VACUUM ANALYZE so the job meets no dead rows. Then the
job as the scheduler runs it: `run_in_chunks(db, rentals.jobs.forfeit_overdue)`, one
transaction per chunk. Target (issue 3): job time at most 3 x the bare update.

After the job: `ledger.check_invariants` is [], and every overdue rental is forfeited once:
one `deposit_forfeited` entry each (4 postings), payment `forfeited`, umbrella `forfeited`,
one notification; nothing else changed.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from bench._infra import bench_database
from server.core.clock import clock
from server.core.db import Database
from server.core.money import DEPOSIT
from server.ledger import repository as ledger_repo
from server.ledger import service as ledger
from server.ledger.rules import (
    REVENUE_FORFEITED_DEPOSITS,
    RIDER_ACCOUNT_PREFIX,
    RIDER_ACCOUNT_SUFFIX,
    WECHAT_DEPOSITS_HELD,
    WECHAT_FORFEITURES_HELD,
)
from server.models import Kiosk, Partner
from server.notifications import repository as outbox
from server.rentals import jobs
from server.rentals import repository as rentals_repo
from server.scheduler.runner import run_in_chunks

TARGET_RATIO = 3.0
KIOSKS = 20

# ------------------------------------------------------------------ loading


def load(
    db: Database, *, rentals: int, overdue: int, active: int, riders: int, now: datetime
) -> None:
    """Bulk rows, consistent by construction. Rider r (1..riders) holds one deposit payment
    (id r); rentals 1..overdue are rider r's overdue rental, the next `active` ones are
    active and not due, the rest are returned rentals spread over all riders."""
    with db.transaction() as s:
        partner = Partner(name="Bench Partner", region="Bench", created_at=now)
        s.add(partner)
        s.flush()
        for k in range(KIOSKS):
            s.add(
                Kiosk(
                    id=f"KB{k:03d}",
                    name=f"Bench kiosk {k}",
                    partner_id=partner.id,
                    lat=31.23,
                    lon=121.47,
                    address="Bench road",
                    venue_type="1.101",
                    slot_count=22,
                    mqtt_password_hash="$7$unused",
                    created_at=now,
                )
            )
    open_ = overdue + active
    stock = max(1000, riders // 10)  # umbrellas in slots (the returned rentals' tags)
    p: dict[str, Any] = {
        "now": now,
        "riders": riders,
        "rentals": rentals,
        "overdue": overdue,
        "open": open_,
        "stock": stock,
        "kiosks": KIOSKS,
        "fen": int(DEPOSIT),
        # (a colon inside a literal would read as a bind parameter)
        "deposits_held": WECHAT_DEPOSITS_HELD,
        "forfeitures_held": WECHAT_FORFEITURES_HELD,
        "revenue": REVENUE_FORFEITED_DEPOSITS,
        "rider": RIDER_ACCOUNT_PREFIX,
        "deposit": RIDER_ACCOUNT_SUFFIX,
        "payment": "payment:BENCH",
    }
    statements = [
        """INSERT INTO riders (id, openid, created_at)
           SELECT g, 'bench-openid-' || g, :now - interval '60 days'
           FROM generate_series(1, :riders) g""",
        """INSERT INTO deposit_payments (id, rider_id, out_trade_no, idempotency_key, prepay_id,
               amount_fen, status, transaction_id, paid_at, created_at)
           SELECT g, g, 'BENCH' || lpad(g::text, 12, '0'), 'deposit-' || g, 'wx' || g,
               :fen, 'HELD', '4200' || lpad(g::text, 16, '0'), :now - interval '60 days',
               :now - interval '60 days'
           FROM generate_series(1, :riders) g""",
        """INSERT INTO ledger_accounts (code, type, rider_id, created_at) VALUES
               (:deposits_held, 'ASSET', NULL, :now),
               (:forfeitures_held, 'ASSET', NULL, :now),
               (:revenue, 'REVENUE', NULL, :now)""",
        """INSERT INTO ledger_accounts (code, type, rider_id, created_at)
           SELECT :rider || g || :deposit, 'LIABILITY', g::text, :now - interval '60 days'
           FROM generate_series(1, :riders) g""",
        """INSERT INTO ledger_entries (id, kind, idempotency_key, rider_id, amount_fen,
               reference, created_at)
           SELECT g, 'DEPOSIT_RECEIVED', '4200' || lpad(g::text, 16, '0'), g::text, :fen,
               :payment || lpad(g::text, 12, '0'), :now - interval '60 days'
           FROM generate_series(1, :riders) g""",
        """INSERT INTO ledger_postings (id, entry_id, account_code, amount_fen)
           SELECT 2 * g - 1, g, :deposits_held, :fen FROM generate_series(1, :riders) g
           UNION ALL
           SELECT 2 * g, g, :rider || g || :deposit, -:fen
           FROM generate_series(1, :riders) g""",
        # umbrellas 1..open are out with their riders, the rest stand in slots
        """INSERT INTO umbrellas (tag, state, kiosk_id, slot_no, first_seen_at, updated_at)
           SELECT 'B' || lpad(g::text, 11, '0'),
               CASE WHEN g <= :open THEN 'on_rent' ELSE 'in_slot' END,
               CASE WHEN g <= :open THEN NULL ELSE 'KB' || lpad((g % :kiosks)::text, 3, '0') END,
               CASE WHEN g <= :open THEN NULL ELSE 1 + g % 22 END,
               :now - interval '90 days', :now - interval '1 day'
           FROM generate_series(1, :open + :stock) g""",
        # overdue: deadlines spread over the last days; active: due within 6 days
        """INSERT INTO rentals (id, rider_id, idempotency_key, deposit_payment_id, deposit_fen,
               status, kiosk_id, slot_no, cmd_id, attempts, umbrella_tag, reason, created_at,
               started_at, deadline_at, returned_at, return_kiosk_id, return_slot_no,
               forfeited_at, ended_at, reminders_sent, updated_at)
           SELECT g, g, 'rent-' || g, g, :fen, 'active',
               'KB' || lpad((g % :kiosks)::text, 3, '0'), 1 + g % 22, 'cmd-' || g, 1,
               'B' || lpad(g::text, 11, '0'), NULL, t, t, t + interval '7 days', NULL, NULL,
               NULL, NULL, NULL, CASE WHEN g <= :overdue THEN 2 ELSE 0 END, t
           FROM (
               SELECT g, CASE WHEN g <= :overdue
                   THEN :now - interval '7 days' - (g % 259200) * interval '1 second'
                   ELSE :now - interval '1 day' + (g % 86400) * interval '1 second' END AS t
               FROM generate_series(1, :open) g
           ) due""",
        """INSERT INTO rentals (id, rider_id, idempotency_key, deposit_payment_id, deposit_fen,
               status, kiosk_id, slot_no, cmd_id, attempts, umbrella_tag, reason, created_at,
               started_at, deadline_at, returned_at, return_kiosk_id, return_slot_no,
               forfeited_at, ended_at, reminders_sent, updated_at)
           SELECT g, r, 'rent-' || g, r, :fen, 'returned',
               'KB' || lpad((g % :kiosks)::text, 3, '0'), 1 + g % 22, 'cmd-' || g, 1,
               'B' || lpad((:open + 1 + g % :stock)::text, 11, '0'), NULL, t, t,
               t + interval '7 days', t + interval '2 hours',
               'KB' || lpad(((g + 1) % :kiosks)::text, 3, '0'), 1 + (g + 1) % 22, NULL,
               t + interval '2 hours', 0, t + interval '2 hours'
           FROM (
               SELECT g, 1 + (g - 1) % :riders AS r,
                   :now - interval '60 days' + (g % 4320000) * interval '1 second' AS t
               FROM generate_series(:open + 1, :rentals) g
           ) done""",
    ]
    with db.engine.begin() as c:
        # Triggers (the foreign keys' and the ledger's) are off for the bulk load only; the
        # ledger invariants are checked right after it.
        c.execute(text("SET LOCAL session_replication_role = replica"))
        for sql in statements:
            c.execute(text(sql), p)
        for table in ("riders", "deposit_payments", "ledger_entries", "ledger_postings", "rentals"):
            c.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            )
    vacuum(db)


def vacuum(db: Database) -> None:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM (ANALYZE)"))


# ------------------------------------------------------------------ measuring


BARE = """UPDATE rentals SET status = 'forfeited', forfeited_at = now()
          WHERE status = 'active' AND deadline_at <= :now"""


def bare_update(db: Database, now: datetime, expected: int) -> float:
    """Seconds for the bare UPDATE, in a transaction rolled back (then vacuumed)."""
    with db.engine.connect() as c:
        t = time.perf_counter()
        n = c.execute(text(BARE), {"now": now}).rowcount
        elapsed = time.perf_counter() - t
        c.rollback()
    if n != expected:
        raise RuntimeError(f"the bare update matched {n} rows, not {expected}")
    vacuum(db)
    return elapsed


#: Every row the job writes, as set-wise SQL in one statement: the least work any job can
#: do here. No ledger rule is checked (balances, keys), nothing is skipped or locked first.
FLOOR = """
WITH due AS (
    UPDATE rentals SET status = 'forfeited', forfeited_at = :now, updated_at = :now
    WHERE status = 'active' AND deadline_at <= :now
    RETURNING id, rider_id, deposit_payment_id, umbrella_tag, deposit_fen, deadline_at
), payments AS (
    UPDATE deposit_payments SET status = 'FORFEITED'
    WHERE id IN (SELECT deposit_payment_id FROM due) RETURNING 1
), umbrellas AS (
    UPDATE umbrellas SET state = 'forfeited', kiosk_id = NULL, slot_no = NULL,
        updated_at = :now
    WHERE tag IN (SELECT umbrella_tag FROM due) RETURNING 1
), entries AS (
    INSERT INTO ledger_entries (kind, idempotency_key, rider_id, amount_fen, reference,
        created_at)
    SELECT 'DEPOSIT_FORFEITED', :forfeit || id, rider_id::text, deposit_fen, :rental || id,
        :now
    FROM due RETURNING id, rider_id, amount_fen
), postings AS (
    INSERT INTO ledger_postings (entry_id, account_code, amount_fen)
    SELECT entries.id, line.account, line.sign * entries.amount_fen
    FROM entries CROSS JOIN LATERAL (VALUES
        (:rider || entries.rider_id || :deposit, 1), (:revenue, -1),
        (:forfeitures_held, 1), (:deposits_held, -1)) AS line(account, sign)
    ORDER BY entries.id
    RETURNING 1
), notes AS (
    INSERT INTO notifications (rider_id, kind, dedup_key, payload, status, attempts,
        next_attempt_at, created_at)
    SELECT rider_id, 'deposit_forfeited', :note || id,
        json_build_object('amount_fen', deposit_fen, 'deadline_at', deadline_at,
            'rental_id', id)::text,
        'pending', 0, :now, :now
    FROM due RETURNING 1
)
SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM payments),
    (SELECT count(*) FROM umbrellas), (SELECT count(*) FROM entries),
    (SELECT count(*) FROM postings), (SELECT count(*) FROM notes)
"""


def _floor_params(now: datetime) -> dict[str, Any]:
    return {
        "now": now,
        "forfeit": "forfeit:rental:",
        "rental": "rental:",
        "note": "deposit_forfeited:rental:",
        "rider": RIDER_ACCOUNT_PREFIX,
        "deposit": RIDER_ACCOUNT_SUFFIX,
        "revenue": REVENUE_FORFEITED_DEPOSITS,
        "forfeitures_held": WECHAT_FORFEITURES_HELD,
        "deposits_held": WECHAT_DEPOSITS_HELD,
    }


def _rolled_back(db: Database, sql: str, params: dict[str, Any], *, triggers: bool) -> Any:
    """(seconds for the statement, its triggers included; its first row or rowcount), in a
    transaction rolled back (then vacuumed). `triggers` False: foreign-key and ledger
    triggers off (`session_replication_role = replica`)."""
    with db.engine.connect() as c:
        if not triggers:
            c.execute(text("SET LOCAL session_replication_role = replica"))
        t = time.perf_counter()
        result = c.execute(text(sql), params)
        got = tuple(result.one()) if result.returns_rows else result.rowcount
        statement = time.perf_counter() - t
        c.rollback()
    vacuum(db)
    return statement, got


def floor(db: Database, now: datetime, overdue: int, *, triggers: bool) -> float:
    """Seconds for the statement, its triggers included."""
    statement, n = _rolled_back(db, FLOOR, _floor_params(now), triggers=triggers)
    if n != (overdue, overdue, overdue, overdue, 4 * overdue, overdue):
        raise RuntimeError(f"the floor statement wrote {n}")
    return statement


_DUE = "FROM rentals WHERE status = 'active' AND deadline_at <= :now"


def _with_postings(legs: str) -> str:
    """Entries and their postings in one statement, `legs` as VALUES (account, sign)."""
    return (
        "WITH e AS (INSERT INTO ledger_entries (kind, idempotency_key, rider_id, amount_fen, "
        "reference, created_at) SELECT 'DEPOSIT_FORFEITED', :forfeit || id, rider_id::text, "
        f"deposit_fen, :rental || id, :now {_DUE} RETURNING id, rider_id, amount_fen) "
        "INSERT INTO ledger_postings (entry_id, account_code, amount_fen) SELECT e.id, "
        "line.account, line.sign * e.amount_fen FROM e "
        f"CROSS JOIN LATERAL (VALUES {legs}) AS line(account, sign)"
    )


#: `--write-costs`: each table's share of FLOOR alone, triggers on (foreign keys, the
#: ledger's balance check), to show where a different write shape would gain.
WRITE_COSTS = {
    "rentals (the bare update)": "UPDATE rentals SET status = 'forfeited', forfeited_at = "
    "now(), updated_at = :now WHERE status = 'active' AND deadline_at <= :now",
    "deposit_payments": "UPDATE deposit_payments SET status = 'FORFEITED' WHERE id IN "
    f"(SELECT deposit_payment_id {_DUE})",
    "umbrellas": "UPDATE umbrellas SET state = 'forfeited', kiosk_id = NULL, slot_no = NULL, "
    f"updated_at = :now WHERE tag IN (SELECT umbrella_tag {_DUE})",
    "notifications": "INSERT INTO notifications (rider_id, kind, dedup_key, payload, status, "
    "attempts, next_attempt_at, created_at) SELECT rider_id, 'deposit_forfeited', :note || id, "
    "json_build_object('amount_fen', deposit_fen, 'rental_id', id)::text, 'pending', 0, :now, "
    f":now {_DUE}",
    "ledger_entries alone": "INSERT INTO ledger_entries (kind, idempotency_key, rider_id, "
    "amount_fen, reference, created_at) SELECT 'DEPOSIT_FORFEITED', :forfeit || id, "
    f"rider_id::text, deposit_fen, :rental || id, :now {_DUE}",
    "ledger_entries + 4 postings each (as now)": _with_postings(
        "(:rider || e.rider_id || :deposit, 1), (:revenue, -1), (:forfeitures_held, 1), "
        "(:deposits_held, -1)"
    ),
    "ledger_entries + 2 postings each (rider, revenue)": _with_postings(
        "(:rider || e.rider_id || :deposit, 1), (:revenue, -1)"
    ),
}


def write_costs(db: Database, now: datetime, bare: float) -> None:
    for label, sql in WRITE_COSTS.items():
        statement, _ = _rolled_back(db, sql, _floor_params(now), triggers=True)
        print(f"   {label}: {statement:.2f} s = {statement / bare:.1f} x bare")


class StepTimes:
    """Wall time spent in the job's steps (module attributes wrapped for the run)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, module: Any, name: str, label: str) -> None:
        real = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t

        setattr(module, name, timed)
        self._undo.append(lambda: setattr(module, name, real))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


class TimedDatabase(Database):
    """The job's Database, timing each transaction from BEGIN to the end of COMMIT."""

    def __init__(self, url: str, steps: StepTimes) -> None:
        super().__init__(url)
        self.steps = steps
        self.chunks = 0

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[Session]:
        t = time.perf_counter()
        with super().transaction(immediate=immediate) as session:
            yield session
            c = time.perf_counter()
        self.steps.seconds["COMMIT"] += time.perf_counter() - c
        self.steps.seconds["= transactions, BEGIN to COMMIT"] += time.perf_counter() - t
        self.chunks += 1


def run_job(url: str) -> tuple[int, float, StepTimes, int]:
    steps = StepTimes()
    steps.wrap(rentals_repo, "claim_overdue", "claim (FOR UPDATE SKIP LOCKED)")
    steps.wrap(ledger, "post_forfeitures", "ledger.post_forfeitures")
    steps.wrap(ledger_repo, "rider_balances", "  rider balances")
    steps.wrap(ledger_repo, "missing_keys", "  existing keys")
    steps.wrap(ledger_repo, "add_entries", "  entries + postings insert")
    steps.wrap(rentals_repo, "mark_forfeited", "mark rentals, payments, umbrellas")
    steps.wrap(outbox, "insert_pending", "notifications")
    db = TimedDatabase(url, steps)
    try:
        t = time.perf_counter()
        total = run_in_chunks(db, jobs.forfeit_overdue)
        elapsed = time.perf_counter() - t
        chunks = db.chunks
    finally:
        steps.restore()
        db.dispose()
    return total, elapsed, steps, chunks


def counts(c: Connection) -> dict[str, int]:
    queries = {
        "rentals forfeited": "SELECT count(*) FROM rentals WHERE status = 'forfeited'",
        "rentals still active and due": (
            "SELECT count(*) FROM rentals WHERE status = 'active' AND deadline_at <= :now"
        ),
        "rentals active": "SELECT count(*) FROM rentals WHERE status = 'active'",
        "rentals returned": "SELECT count(*) FROM rentals WHERE status = 'returned'",
        "forfeiture entries": (
            "SELECT count(*) FROM ledger_entries WHERE kind = 'DEPOSIT_FORFEITED'"
        ),
        "distinct forfeited rentals in the ledger": (
            "SELECT count(DISTINCT reference) FROM ledger_entries WHERE kind = 'DEPOSIT_FORFEITED'"
        ),
        "forfeiture postings": (
            "SELECT count(*) FROM ledger_postings p JOIN ledger_entries e ON e.id = p.entry_id "
            "WHERE e.kind = 'DEPOSIT_FORFEITED'"
        ),
        "payments forfeited": "SELECT count(*) FROM deposit_payments WHERE status = 'FORFEITED'",
        "umbrellas forfeited": "SELECT count(*) FROM umbrellas WHERE state = 'forfeited'",
        "notifications": "SELECT count(*) FROM notifications WHERE kind = 'deposit_forfeited'",
    }
    return {
        k: int(c.execute(text(q), {"now": clock.now()}).scalar_one()) for k, q in queries.items()
    }


def check(db: Database, overdue: int, active: int, returned: int) -> list[str]:
    problems = []
    with db.transaction() as s:
        problems += ledger.check_invariants(s)
        found = counts(s.connection())
        # The forfeited rentals are exactly the overdue ones (ids 1..overdue).
        wrong = s.execute(
            text("SELECT count(*) FROM rentals WHERE (status = 'forfeited') <> (id <= :overdue)"),
            {"overdue": overdue},
        ).scalar_one()
    want = {
        "rentals forfeited": overdue,
        "rentals still active and due": 0,
        "rentals active": active,
        "rentals returned": returned,
        "forfeiture entries": overdue,
        "distinct forfeited rentals in the ledger": overdue,
        "forfeiture postings": 4 * overdue,
        "payments forfeited": overdue,
        "umbrellas forfeited": overdue,
        "notifications": overdue,
    }
    problems += [f"{k}: {found[k]}, expected {v}" for k, v in want.items() if found[k] != v]
    if wrong:
        problems.append(f"{wrong} rentals forfeited that were not overdue, or not forfeited")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rentals", type=int, default=1_000_000)
    ap.add_argument("--overdue", type=int, default=100_000)
    ap.add_argument("--active", type=int, default=50_000, help="active rentals not yet due")
    ap.add_argument("--riders", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="100,000 rentals, 10,000 overdue")
    ap.add_argument(
        "--write-costs",
        action="store_true",
        help="also time each table's writes alone (about 5 more minutes at full size)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.rentals, args.overdue, args.active, args.riders = 100_000, 10_000, 5_000, 20_000
    if args.overdue + args.active > min(args.riders, args.rentals):
        ap.error("every open rental needs a rider of its own and a row: raise --riders")
    returned = args.rentals - args.overdue - args.active
    now = clock.now()

    with bench_database() as url:
        db = Database(url)
        try:
            t = time.perf_counter()
            load(
                db,
                rentals=args.rentals,
                overdue=args.overdue,
                active=args.active,
                riders=args.riders,
                now=now,
            )
            with db.transaction() as s:
                loaded = ledger.check_invariants(s)
            if loaded:
                raise RuntimeError(f"the bulk load broke the ledger: {loaded}")
            print(
                f"forfeit_sweep: {args.rentals:,} rentals ({args.overdue:,} overdue, "
                f"{args.active:,} active not due, {returned:,} returned), {args.riders:,} "
                f"riders with a held deposit in the ledger; loaded in "
                f"{time.perf_counter() - t:.1f} s (PostgreSQL, Alembic schema, ledger triggers)"
            )

            cold = bare_update(db, now, args.overdue)
            bare = bare_update(db, now, args.overdue)
            print(
                f"bare UPDATE of the {args.overdue:,} overdue rentals (rolled back, then "
                f"VACUUM): {cold:.2f} s cold, {bare:.2f} s warm (the baseline)"
            )

            f_total = floor(db, now, args.overdue, triggers=True)
            f_bare = floor(db, now, args.overdue, triggers=False)
            print(
                f"floor: every row the job writes, as one set-wise SQL statement (no rule "
                f"checked in Python; rolled back): {f_total:.2f} s = {f_total / bare:.1f} x "
                f"bare (foreign-key checks and the ledger's balance trigger included); with "
                f"triggers off {f_bare:.2f} s ({f_bare / bare:.1f} x bare)"
            )
            if args.write_costs:
                print("each table's writes alone, triggers on (rolled back):")
                write_costs(db, now, bare)

            total, job_s, steps, chunks = run_job(url)
            print(
                f"job run_in_chunks(forfeit_overdue): {total:,} rentals forfeited in "
                f"{job_s:.2f} s, {chunks} transactions of up to {jobs.CHUNK:,} "
                f"({total / job_s:,.0f} rentals/s)"
            )
            for label, seconds in sorted(steps.seconds.items(), key=lambda x: x[0].lstrip()):
                print(f"   {label}: {seconds:.2f} s ({seconds / job_s:.0%})")

            problems = check(db, args.overdue, args.active, returned)
            for p in problems:
                print(f"   !! {p}")
            ratio = job_s / bare
            verdict = "PASS" if ratio <= TARGET_RATIO and not problems else "MISS"
            print(
                f"job / floor = {job_s / f_total:.1f} x; "
                f"job / bare update = {job_s:.2f} s / {bare:.2f} s = {ratio:.1f} x "
                f"(target <= {TARGET_RATIO:.0f} x); ledger invariants "
                f"{'hold' if not problems else 'VIOLATED'}, each overdue rental forfeited "
                f"exactly once: {verdict}"
            )
        finally:
            db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
