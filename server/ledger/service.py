"""Ledger use cases. Services flush, never commit: the caller's entry point owns the
transaction (CONVENTIONS: Transactions belong to the edge), so a rental, its payment and
their ledger entry commit or roll back together."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.core.clock import clock
from server.core.money import Fen
from server.ledger import repository, rules
from server.ledger.rules import DepositTotals, IdempotencyKeyReused
from server.models.ledger import EntryKind, JournalEntry

MAX_KEY_LENGTH = 128

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Forfeiture:
    rider_id: str
    amount: Fen
    idempotency_key: str
    reference: str


def post(
    session: Session,
    kind: EntryKind | str,
    *,
    rider_id: str,
    amount: Fen,
    idempotency_key: str,
    reference: str,
) -> JournalEntry:
    """Record one money movement and return its entry (postings loaded).

    Idempotent (SPEC §3): a key already posted returns the existing entry and moves nothing;
    the same key for a different movement raises `IdempotencyKeyReused`. Refuses, writing
    nothing, a refund or forfeiture above the rider's held deposit (`InsufficientDeposit`),
    a reversal above what was forfeited (`NothingToReverse`), and an amount that is not a
    positive integer of fen (`InvalidAmount`).
    """
    kind = EntryKind(kind)
    fen = rules.require_amount(amount)
    account = rules.rider_account(rider_id)
    _require_text("idempotency_key", idempotency_key)
    _require_text("reference", reference)
    now = clock.now()

    # Flush the caller's pending work first, so an IntegrityError inside the savepoint
    # below can only be ours.
    session.flush()
    try:
        # One savepoint around the whole movement: a refusal (DomainError) or a lost race
        # on the UNIQUE key rolls back only what this call wrote, accounts included, and
        # leaves the caller's transaction usable.
        with session.begin_nested():
            repository.ensure_accounts(
                session,
                {**rules.PLATFORM_ACCOUNTS, account: rules.account_type(account)},
                rider_id=rider_id,
                now=now,
            )
            # One rider's movements are serialized: the balance read below stays true until
            # commit, and a concurrent post of the same key waits here, then finds the
            # committed entry.
            repository.lock_account(session, account)
            existing = repository.find_entry(session, idempotency_key)
            if existing is not None:
                return _same_movement(existing, kind, rider_id, fen, reference)
            owed = Fen(-repository.balance(session, account))
            forfeited = repository.net_forfeited(session, account)
            lines = rules.postings_for(
                kind, rider_id=rider_id, amount=fen, owed=owed, forfeited=forfeited
            )
            return repository.add_entry(
                session,
                kind=kind,
                rider_id=rider_id,
                amount=fen,
                idempotency_key=idempotency_key,
                reference=reference,
                lines=lines,
                now=now,
            )
    except IntegrityError:
        # The UNIQUE key is the real guard (the row lock does not exist on SQLite, and a
        # caller may already hold an entry for this key in another session).
        existing = repository.find_entry(session, idempotency_key)
        if existing is None:
            raise
        return _same_movement(existing, kind, rider_id, fen, reference)


def post_invoice(
    session: Session,
    kind: EntryKind,
    *,
    advertiser_id: int,
    invoice_id: int,
    revenue: Mapping[str | None, Fen],
    credits: Mapping[str | None, Fen],
) -> JournalEntry | None:
    """Record an advertiser invoice being issued or paid (rules: `invoice_postings`), its
    revenue and applied credits per kiosk; keyed `invoice:<id>:issued` / `invoice:<id>:paid`,
    so posting it again returns the same entry and moves nothing. None when nothing moves
    (a zero total paid)."""
    lines = rules.invoice_postings(
        kind, advertiser_id=advertiser_id, revenue=revenue, credits=credits
    )
    if not lines:
        return None
    subtotal = sum(revenue.values())
    amount = rules.require_amount(
        subtotal if kind is EntryKind.AD_INVOICE_ISSUED else subtotal - sum(credits.values())
    )
    suffix = "issued" if kind is EntryKind.AD_INVOICE_ISSUED else "paid"
    return _post_platform(
        session,
        kind,
        amount=amount,
        idempotency_key=f"invoice:{invoice_id}:{suffix}",
        reference=f"invoice:{invoice_id}",
        lines=lines,
    )


def post_partner_share(
    session: Session, kind: EntryKind, *, partner_id: int, statement_id: int, amount: Fen
) -> JournalEntry:
    """A partner statement's share accrued or paid out (rules: `partner_share_postings`),
    keyed `partner-statement:<id>:accrued` / `:paid`: posting it again moves nothing."""
    lines = rules.partner_share_postings(kind, partner_id=partner_id, amount=amount)
    suffix = "accrued" if kind is EntryKind.PARTNER_SHARE_ACCRUED else "paid"
    return _post_platform(
        session,
        kind,
        amount=rules.require_amount(amount),
        idempotency_key=f"partner-statement:{statement_id}:{suffix}",
        reference=f"partner_statement:{statement_id}",
        lines=lines,
    )


def _post_platform(
    session: Session,
    kind: EntryKind,
    *,
    amount: Fen,
    idempotency_key: str,
    reference: str,
    lines: tuple[rules.PostingLine, ...],
) -> JournalEntry:
    """Post a movement that concerns no rider (`rider_id` None), idempotently by key, in a
    savepoint as `post` does."""
    now = clock.now()
    session.flush()
    try:
        with session.begin_nested():
            repository.ensure_accounts(
                session,
                {line.account: rules.account_type(line.account) for line in lines},
                rider_id=None,
                now=now,
            )
            existing = repository.find_entry(session, idempotency_key)
            if existing is not None:
                return _same_movement(existing, kind, None, amount, reference)
            return repository.add_entry(
                session,
                kind=kind,
                rider_id=None,
                amount=amount,
                idempotency_key=idempotency_key,
                reference=reference,
                lines=lines,
                now=now,
            )
    except IntegrityError:
        existing = repository.find_entry(session, idempotency_key)
        if existing is None:
            raise
        return _same_movement(existing, kind, None, amount, reference)


def _same_movement(
    entry: JournalEntry, kind: EntryKind, rider_id: str | None, amount: Fen, reference: str
) -> JournalEntry:
    if (entry.kind, entry.rider_id, entry.amount_fen, entry.reference) != (
        kind,
        rider_id,
        amount,
        reference,
    ):
        raise IdempotencyKeyReused(
            f"idempotency key {entry.idempotency_key!r} was used for another movement",
            idempotency_key=entry.idempotency_key,
            entry_id=entry.id,
        )
    return entry


def _require_text(name: str, value: str) -> None:
    if not value or len(value) > MAX_KEY_LENGTH:
        raise ValueError(f"{name} must be 1..{MAX_KEY_LENGTH} characters, got {value!r}")


def balance(session: Session, account: str) -> Fen:
    """Signed balance, debit positive: assets positive, liabilities and revenue negative."""
    return repository.balance(session, account)


def rider_deposit(session: Session, rider_id: str) -> Fen:
    """The deposit we owe (hold for) the rider, positive."""
    return Fen(-repository.balance(session, rules.rider_account(rider_id)))


def rider_forfeited(session: Session, rider_id: str) -> Fen:
    """What was forfeited from the rider, net of reversals."""
    return repository.net_forfeited(session, rules.rider_account(rider_id))


def entries_for_rider(session: Session, rider_id: str) -> list[JournalEntry]:
    return repository.entries_for_rider(session, rider_id)


def deposit_totals(session: Session) -> DepositTotals:
    return repository.deposit_totals(session)


def check_invariants(session: Session) -> list[str]:
    """Every ledger invariant (rules module docstring), computed in SQL; [] when all hold."""
    session.flush()
    problems: list[str] = []
    for label, offenders in (
        ("entries that do not balance (entry id, sum fen)", repository.unbalanced_entries),
        (
            "riders owed less than zero (account, balance fen)",
            repository.riders_owed_less_than_zero,
        ),
        (
            "riders with more reversed than forfeited (account, net fen)",
            repository.riders_reversed_more_than_forfeited,
        ),
        (
            "advertisers that paid more than invoiced (account, balance fen)",
            repository.advertisers_overpaid,
        ),
        (
            "partners paid more than accrued (account, balance fen)",
            repository.partners_overpaid,
        ),
    ):
        found = offenders(session)
        if found.count:
            problems.append(f"{found.count} {label}: {found.sample}")
    problems.extend(repository.deposit_totals(session).violations())
    return problems


def post_forfeitures(session: Session, items: Sequence[Forfeiture]) -> list[Forfeiture]:
    """Post many `deposit_forfeited` movements in a few statements (the 7-day sweep; SPEC §2).

    The same rules as `post`, set-wise: each item's key is posted at most once (a key that
    exists is skipped, so a re-run or a second scheduler moves nothing twice), and an item
    larger than the rider's held deposit is refused and left out. Returns the items posted.
    The caller must hold the rows that caused them (the rentals) locked, so no concurrent
    movement of the same rider can change the balances read here."""
    if not items:
        return []
    now = clock.now()
    session.flush()
    repository.ensure_platform_accounts(session, now=now)
    owed = repository.rider_balances(session, {i.rider_id for i in items})
    fresh = repository.missing_keys(session, [i.idempotency_key for i in items])
    ready: list[tuple[Forfeiture, tuple[rules.PostingLine, ...]]] = []
    for item in items:
        if item.idempotency_key not in fresh:
            continue
        fen = rules.require_amount(item.amount)
        held = Fen(-owed.get(item.rider_id, 0))
        if fen > held:
            log.error(
                "forfeiture %s refused: rider %s holds %s fen, not %s",
                item.idempotency_key,
                item.rider_id,
                held,
                fen,
            )
            continue
        owed[item.rider_id] = owed.get(item.rider_id, 0) + fen
        lines = rules.postings_for(
            EntryKind.DEPOSIT_FORFEITED,
            rider_id=item.rider_id,
            amount=fen,
            owed=held,
            forfeited=Fen(0),
        )
        ready.append((item, lines))
    repository.add_entries(
        session,
        EntryKind.DEPOSIT_FORFEITED,
        [(i.rider_id, i.amount, i.idempotency_key, i.reference, lines) for i, lines in ready],
        now=now,
    )
    return [i for i, _ in ready]
