"""Every ledger query. Balances and invariants are computed in SQL (GROUP BY), never by
loading postings into Python."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from server.core.db import any_of_slices
from server.core.money import Fen
from server.ledger.rules import (
    ADVERTISER_ACCOUNT_PREFIX,
    ADVERTISER_ACCOUNT_SUFFIX,
    PARTNER_ACCOUNT_PREFIX,
    PARTNER_ACCOUNT_SUFFIX,
    PLATFORM_ACCOUNTS,
    REVENUE_FORFEITED_DEPOSITS,
    WECHAT_DEPOSITS_HELD,
    DepositTotals,
    PostingLine,
    rider_account,
)
from server.models.ledger import AccountType, EntryKind, JournalEntry, LedgerAccount, Posting

#: How many offending rows each invariant reports; the count is always exact.
REPORT_LIMIT = 20

#: Rider deposit accounts: liabilities that belong to a rider (partner payables are
#: liabilities too, and take no part in the deposit invariants).
_RIDER_ACCOUNT = (LedgerAccount.type == AccountType.LIABILITY) & LedgerAccount.rider_id.is_not(None)


def ensure_accounts(
    session: Session, accounts: Mapping[str, AccountType], *, rider_id: str | None, now: datetime
) -> None:
    """Create the accounts that do not exist yet. ON CONFLICT DO NOTHING, so two
    transactions opening the same rider's account at once both succeed."""
    rows = [
        {
            "code": code,
            "type": account_type,
            "rider_id": rider_id if account_type is AccountType.LIABILITY else None,
            "created_at": now,
        }
        for code, account_type in accounts.items()
    ]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(LedgerAccount).values(rows).on_conflict_do_nothing())


def lock_account(session: Session, code: str) -> None:
    """Serialize the movements of one account (PostgreSQL; SQLite has one writer anyway).
    FOR NO KEY UPDATE, so the foreign-key checks of concurrent postings are not blocked."""
    session.execute(
        select(LedgerAccount.code).where(LedgerAccount.code == code).with_for_update(key_share=True)
    )


def find_entry(session: Session, idempotency_key: str) -> JournalEntry | None:
    return session.scalars(
        select(JournalEntry)
        .where(JournalEntry.idempotency_key == idempotency_key)
        .options(selectinload(JournalEntry.postings))
        .execution_options(populate_existing=True)
    ).one_or_none()


def add_entry(
    session: Session,
    *,
    kind: EntryKind,
    rider_id: str | None,
    amount: Fen,
    idempotency_key: str,
    reference: str,
    lines: tuple[PostingLine, ...],
    now: datetime,
) -> JournalEntry:
    entry = JournalEntry(
        kind=kind,
        idempotency_key=idempotency_key,
        rider_id=rider_id,
        amount_fen=amount,
        reference=reference,
        created_at=now,
        postings=[
            Posting(account_code=line.account, amount_fen=line.amount, kiosk_id=line.kiosk_id)
            for line in lines
        ],
    )
    session.add(entry)
    session.flush()
    return entry


def entries_for_rider(session: Session, rider_id: str) -> list[JournalEntry]:
    return list(
        session.scalars(
            select(JournalEntry)
            .where(JournalEntry.rider_id == rider_id)
            .options(selectinload(JournalEntry.postings))
            .order_by(JournalEntry.id)
        )
    )


def balance(session: Session, code: str) -> Fen:
    """SUM of the account's postings: debit positive, credit negative."""
    total = session.scalar(
        select(func.coalesce(func.sum(Posting.amount_fen), 0)).where(Posting.account_code == code)
    )
    return Fen(int(total or 0))


def net_forfeited(session: Session, account_code: str) -> Fen:
    """What was forfeited from one rider account, net of reversals (a forfeiture debits the
    rider account, a reversal credits it back)."""
    total = session.scalar(
        select(func.coalesce(func.sum(Posting.amount_fen), 0))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(
            Posting.account_code == account_code,
            JournalEntry.kind.in_((EntryKind.DEPOSIT_FORFEITED, EntryKind.FORFEITURE_REVERSED)),
        )
    )
    return Fen(int(total or 0))


@dataclass(frozen=True)
class Offenders:
    count: int
    sample: list[tuple[str, int]]  # (entry id or account code, fen)


def unbalanced_entries(session: Session) -> Offenders:
    """Entries whose postings do not sum to zero, or that have fewer than two postings."""
    total = func.coalesce(func.sum(Posting.amount_fen), 0)
    bad = (
        select(JournalEntry.id.label("id"), total.label("total"))
        .outerjoin(Posting, Posting.entry_id == JournalEntry.id)
        .group_by(JournalEntry.id)
        .having((total != 0) | (func.count(Posting.id) < 2))
    )
    return _offenders(session, bad)


def riders_owed_less_than_zero(session: Session) -> Offenders:
    """Rider deposit accounts with a debit balance (we would owe the rider a negative sum)."""
    total = func.sum(Posting.amount_fen)
    bad = (
        select(Posting.account_code.label("id"), total.label("total"))
        .join(LedgerAccount, LedgerAccount.code == Posting.account_code)
        .where(_RIDER_ACCOUNT)
        .group_by(Posting.account_code)
        .having(total > 0)
    )
    return _offenders(session, bad)


def riders_reversed_more_than_forfeited(session: Session) -> Offenders:
    total = func.sum(Posting.amount_fen)
    bad = (
        select(Posting.account_code.label("id"), total.label("total"))
        .join(LedgerAccount, LedgerAccount.code == Posting.account_code)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(
            _RIDER_ACCOUNT,
            JournalEntry.kind.in_((EntryKind.DEPOSIT_FORFEITED, EntryKind.FORFEITURE_REVERSED)),
        )
        .group_by(Posting.account_code)
        .having(total < 0)
    )
    return _offenders(session, bad)


def partners_overpaid(session: Session) -> Offenders:
    """Partner payables with a debit balance (paid out more than accrued)."""
    total = func.sum(Posting.amount_fen)
    bad = (
        select(Posting.account_code.label("id"), total.label("total"))
        .where(
            Posting.account_code.startswith(PARTNER_ACCOUNT_PREFIX),
            Posting.account_code.endswith(PARTNER_ACCOUNT_SUFFIX),
        )
        .group_by(Posting.account_code)
        .having(total > 0)
    )
    return _offenders(session, bad)


def advertisers_overpaid(session: Session) -> Offenders:
    """Advertiser receivables with a credit balance (paid more than invoiced)."""
    total = func.sum(Posting.amount_fen)
    bad = (
        select(Posting.account_code.label("id"), total.label("total"))
        .where(
            Posting.account_code.startswith(ADVERTISER_ACCOUNT_PREFIX),
            Posting.account_code.endswith(ADVERTISER_ACCOUNT_SUFFIX),
        )
        .group_by(Posting.account_code)
        .having(total < 0)
    )
    return _offenders(session, bad)


def _offenders(session: Session, bad: Select[Any, Any]) -> Offenders:
    sub = bad.subquery()
    count = session.scalar(select(func.count()).select_from(sub)) or 0
    sample = [
        (str(row.id), int(row.total))
        for row in session.execute(select(sub).order_by(sub.c.id).limit(REPORT_LIMIT))
    ]
    return Offenders(count=int(count), sample=sample)


def deposit_totals(session: Session) -> DepositTotals:
    """The terms of invariant 3 in two aggregate queries (rules module docstring)."""
    received, refunded = session.execute(
        select(
            func.coalesce(
                func.sum(
                    case((JournalEntry.kind == EntryKind.DEPOSIT_RECEIVED, JournalEntry.amount_fen))
                ),
                0,
            ),
            func.coalesce(
                func.sum(
                    case((JournalEntry.kind == EntryKind.DEPOSIT_REFUNDED, JournalEntry.amount_fen))
                ),
                0,
            ),
        )
    ).one()
    zero = literal(0)
    riders, revenue, wechat = session.execute(
        select(
            func.coalesce(
                func.sum(case((_RIDER_ACCOUNT, Posting.amount_fen))),
                zero,
            ),
            func.coalesce(
                func.sum(
                    case(
                        (
                            Posting.account_code == REVENUE_FORFEITED_DEPOSITS,
                            Posting.amount_fen,
                        )
                    )
                ),
                zero,
            ),
            func.coalesce(
                func.sum(case((Posting.account_code == WECHAT_DEPOSITS_HELD, Posting.amount_fen))),
                zero,
            ),
        ).join(LedgerAccount, LedgerAccount.code == Posting.account_code)
    ).one()
    return DepositTotals(
        received=Fen(int(received)),
        held=Fen(-int(riders)),
        refunded=Fen(int(refunded)),
        forfeited=Fen(-int(revenue)),
        wechat_deposits_held=Fen(int(wechat)),
    )


def ensure_platform_accounts(session: Session, *, now: datetime) -> None:
    rows = [
        {"code": code, "type": account_type, "rider_id": None, "created_at": now}
        for code, account_type in PLATFORM_ACCOUNTS.items()
    ]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(LedgerAccount).values(rows).on_conflict_do_nothing())


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def rider_balances(session: Session, rider_ids: Collection[str]) -> dict[str, int]:
    """rider id -> signed balance of its deposit account (negative = we owe the rider)."""
    codes = {rider_account(r): r for r in rider_ids}
    found: dict[str, int] = {}
    keys = sorted(codes)
    total = select(Posting.account_code, func.sum(Posting.amount_fen)).group_by(
        Posting.account_code
    )
    for where in any_of_slices(session, Posting.account_code, keys):
        for code, amount in session.execute(total.where(where)):
            found[codes[code]] = int(amount)
    return found


def missing_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """The idempotency keys among `keys` that no entry has yet."""
    taken: set[str] = set()
    for where in any_of_slices(session, JournalEntry.idempotency_key, keys):
        taken.update(session.scalars(select(JournalEntry.idempotency_key).where(where)))
    return set(keys) - taken


#: PostgreSQL: ids for `n` new entries, taken from the entries' own sequence.
_PG_ENTRY_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('ledger_entries', 'id')) FROM generate_series(1, :n)"
)

#: PostgreSQL: entries and their postings from parallel arrays, in one statement. The entry
#: ids are given (`_PG_ENTRY_IDS`), so nothing is joined: joined unnest() results make the
#: planner's row estimates explode, and past `jit_above_cost` every statement paid ~150 ms
#: of JIT compilation (measured in bench/forfeit_sweep). Postings are inserted in entry,
#: then line order (they are read back ordered by id).
_PG_ADD_ENTRIES = text(
    """
WITH entries AS (
    INSERT INTO ledger_entries (id, kind, idempotency_key, rider_id, amount_fen, reference,
                                created_at)
    SELECT e.id, :kind, e.key, e.rider_id, e.amount, e.reference, :now
    FROM unnest(CAST(:ids AS bigint[]), CAST(:keys AS varchar[]),
                CAST(:rider_ids AS varchar[]), CAST(:amounts AS bigint[]),
                CAST(:refs AS varchar[])) AS e(id, key, rider_id, amount, reference)
    RETURNING 1
)
INSERT INTO ledger_postings (entry_id, account_code, amount_fen)
SELECT line.entry_id, line.account, line.amount
FROM unnest(CAST(:line_entries AS bigint[]), CAST(:line_accounts AS varchar[]),
            CAST(:line_amounts AS bigint[])) WITH ORDINALITY AS line(entry_id, account, amount, n)
ORDER BY line.n
"""
).bindparams(bindparam("kind", type_=JournalEntry.__table__.c.kind.type))


def add_entries(
    session: Session,
    kind: EntryKind,
    items: Sequence[tuple[str, int, str, str, tuple[PostingLine, ...]]],
    *,
    now: datetime,
) -> None:
    """Insert entries (rider_id, amount, key, reference, lines) and their postings: on
    PostgreSQL two statements (ids, then both tables), elsewhere two multi-row INSERTs,
    whatever the number."""
    if not items:
        return
    if _postgres(session):
        entry_ids = [int(i) for i in session.scalars(_PG_ENTRY_IDS, {"n": len(items)})]
        session.execute(
            _PG_ADD_ENTRIES,
            {
                "kind": kind,
                "now": now,
                "ids": entry_ids,
                "keys": [key for _, _, key, _, _ in items],
                "rider_ids": [rider_id for rider_id, _, _, _, _ in items],
                "amounts": [amount for _, amount, _, _, _ in items],
                "refs": [reference for _, _, _, reference, _ in items],
                "line_entries": [
                    entry_id
                    for entry_id, (*_, lines) in zip(entry_ids, items, strict=True)
                    for _ in lines
                ],
                "line_accounts": [line.account for *_, lines in items for line in lines],
                "line_amounts": [line.amount for *_, lines in items for line in lines],
            },
        )
        return
    ids = session.execute(
        insert(JournalEntry).returning(JournalEntry.id, JournalEntry.idempotency_key),
        [
            {
                "kind": kind,
                "idempotency_key": key,
                "rider_id": rider_id,
                "amount_fen": amount,
                "reference": reference,
                "created_at": now,
            }
            for rider_id, amount, key, reference, _ in items
        ],
    ).all()
    by_key = {key: entry_id for entry_id, key in ids}
    session.execute(
        insert(Posting),
        [
            {"entry_id": by_key[key], "account_code": line.account, "amount_fen": line.amount}
            for _, _, key, _, lines in items
            for line in lines
        ],
    )
