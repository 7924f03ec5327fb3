"""The ledger against real databases (SQLite and PostgreSQL): money moves once, balances
never go negative, and the invariants of SPEC §3 hold after every step."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.core.clock import clock
from server.core.db import Database
from server.core.money import DEPOSIT, Fen
from server.ledger import repository, service
from server.ledger.rules import (
    REVENUE_FORFEITED_DEPOSITS,
    WECHAT_DEPOSITS_HELD,
    WECHAT_FORFEITURES_HELD,
    IdempotencyKeyReused,
    InsufficientDeposit,
    InvalidAmount,
    NothingToReverse,
)
from server.models.ledger import EntryKind, JournalEntry, LedgerAccount, Posting

RECEIVED = EntryKind.DEPOSIT_RECEIVED
REFUNDED = EntryKind.DEPOSIT_REFUNDED
FORFEITED = EntryKind.DEPOSIT_FORFEITED
REVERSED = EntryKind.FORFEITURE_REVERSED


def post(
    s: Session, kind: EntryKind, rider: str, key: str, ref: str, amount: int = DEPOSIT
) -> JournalEntry:
    return service.post(
        s, kind, rider_id=rider, amount=Fen(amount), idempotency_key=key, reference=ref
    )


def row_counts(db: Database) -> tuple[int, int, int]:
    with db.transaction() as s:
        return (
            s.scalar(select(func.count()).select_from(LedgerAccount)) or 0,
            s.scalar(select(func.count()).select_from(JournalEntry)) or 0,
            s.scalar(select(func.count()).select_from(Posting)) or 0,
        )


#: Row locks, concurrent writers and triggers exist on PostgreSQL only (SQLite has one writer).
postgresql_only = pytest.mark.parametrize("db", ["postgresql"], indirect=True)


def test_a_scripted_run_of_deposits_refunds_forfeitures_and_reversals_keeps_every_invariant(
    db: Database,
) -> None:
    steps: list[Callable[[Session], object]] = [
        *(
            (lambda s, r=r: post(s, RECEIVED, r, f"pay:{r}", f"payment:{r}"))
            for r in ("a", "b", "c", "d")
        ),
        lambda s: post(s, REFUNDED, "a", "refund:a", "refund:a"),
        lambda s: post(s, FORFEITED, "b", "forfeit:rental-b", "rental:rental-b"),
        lambda s: post(s, FORFEITED, "c", "forfeit:rental-c", "rental:rental-c"),
        lambda s: post(s, REVERSED, "c", "reverse:rental-c", "rental:rental-c"),
        lambda s: post(s, REFUNDED, "c", "refund:c", "refund:c"),
        lambda s: post(s, RECEIVED, "b", "pay:b2", "payment:b2"),
    ]
    for step in steps:
        with db.transaction() as s:
            step(s)
        with db.transaction() as s:
            assert service.check_invariants(s) == []

    with db.transaction() as s:
        owed = {r: service.rider_deposit(s, r) for r in "abcd"}
        forfeited = {r: service.rider_forfeited(s, r) for r in "abcd"}
        totals = service.deposit_totals(s)
        platform = {
            code: service.balance(s, code)
            for code in (WECHAT_DEPOSITS_HELD, WECHAT_FORFEITURES_HELD, REVENUE_FORFEITED_DEPOSITS)
        }
        history = [(e.kind, e.reference) for e in service.entries_for_rider(s, "c")]
    assert owed == {"a": 0, "b": 3000, "c": 0, "d": 3000}
    assert forfeited == {"a": 0, "b": 3000, "c": 0, "d": 0}
    assert (totals.received, totals.held, totals.refunded, totals.forfeited) == (
        15000,
        6000,
        6000,
        3000,
    )
    assert platform == {
        WECHAT_DEPOSITS_HELD: 6000,
        WECHAT_FORFEITURES_HELD: 3000,
        REVENUE_FORFEITED_DEPOSITS: -3000,
    }
    assert history == [
        (RECEIVED, "payment:c"),
        (FORFEITED, "rental:rental-c"),
        (REVERSED, "rental:rental-c"),
        (REFUNDED, "refund:c"),
    ]


def test_the_same_idempotency_key_posted_ten_times_moves_money_once(db: Database) -> None:
    ids = []
    for _ in range(5):  # a replayed notification: each replay is its own transaction
        with db.transaction() as s:
            ids.append(post(s, RECEIVED, "r1", "wxpay:notify:T1", "payment:T1").id)
    with db.transaction() as s:  # and retries inside one transaction
        ids.extend(post(s, RECEIVED, "r1", "wxpay:notify:T1", "payment:T1").id for _ in range(5))

    assert len(set(ids)) == 1
    assert row_counts(db)[1:] == (1, 2)
    with db.transaction() as s:
        assert service.rider_deposit(s, "r1") == DEPOSIT
        assert service.balance(s, WECHAT_DEPOSITS_HELD) == DEPOSIT
        assert service.check_invariants(s) == []


def test_a_repeated_key_returns_the_entry_with_its_postings(db: Database) -> None:
    with db.transaction() as s:
        post(s, RECEIVED, "r1", "k1", "payment:T1")
    with db.transaction() as s:
        entry = post(s, RECEIVED, "r1", "k1", "payment:T1")
        legs = {(p.account_code, p.amount_fen) for p in entry.postings}
    assert legs == {(WECHAT_DEPOSITS_HELD, 3000), ("rider:r1:deposit", -3000)}


def test_a_key_reused_for_a_different_movement_is_refused(db: Database) -> None:
    with db.transaction() as s:
        post(s, RECEIVED, "r1", "k1", "payment:T1")
    for kind, rider, ref, amount in (
        (REFUNDED, "r1", "payment:T1", 3000),
        (RECEIVED, "r2", "payment:T1", 3000),
        (RECEIVED, "r1", "payment:T2", 3000),
        (RECEIVED, "r1", "payment:T1", 2999),
    ):
        with db.transaction() as s, pytest.raises(IdempotencyKeyReused):
            post(s, kind, rider, "k1", ref, amount)
    assert row_counts(db)[1:] == (1, 2)


def test_a_refund_above_the_held_deposit_is_refused_and_writes_nothing(db: Database) -> None:
    with db.transaction() as s:
        post(s, RECEIVED, "r1", "pay:1", "payment:1")
    before = row_counts(db)

    with db.transaction() as s:  # the caller catches the refusal and commits the rest
        with pytest.raises(InsufficientDeposit, match="has 3000 fen of deposit held") as caught:
            post(s, REFUNDED, "r1", "refund:1", "refund:1", amount=3001)
        with pytest.raises(InsufficientDeposit):
            post(s, REFUNDED, "stranger", "refund:2", "refund:2")
        with pytest.raises(InsufficientDeposit):
            post(s, FORFEITED, "stranger", "forfeit:2", "rental:2")
        with pytest.raises(NothingToReverse):
            post(s, REVERSED, "r1", "reverse:1", "rental:1")

    assert caught.value.details == {"rider_id": "r1", "amount": 3001, "held": 3000}
    assert row_counts(db) == before  # not even an account for "stranger"
    with db.transaction() as s:
        assert service.rider_deposit(s, "r1") == DEPOSIT
        assert service.check_invariants(s) == []


def test_a_rider_deposit_refunded_once_cannot_be_refunded_or_forfeited_again(
    db: Database,
) -> None:
    with db.transaction() as s:
        post(s, RECEIVED, "r1", "pay:1", "payment:1")
        post(s, REFUNDED, "r1", "refund:1", "refund:1")
    with db.transaction() as s, pytest.raises(InsufficientDeposit):
        post(s, REFUNDED, "r1", "refund:again", "refund:again")
    with db.transaction() as s, pytest.raises(InsufficientDeposit):
        post(s, FORFEITED, "r1", "forfeit:1", "rental:1")
    with db.transaction() as s:
        assert service.rider_deposit(s, "r1") == 0
        assert service.check_invariants(s) == []


@pytest.mark.parametrize("amount", [30.0, 0, -3000])
def test_a_non_integer_or_non_positive_amount_is_refused_before_touching_the_database(
    db: Database, amount: object
) -> None:
    with db.transaction() as s, pytest.raises(InvalidAmount):
        service.post(
            s,
            RECEIVED,
            rider_id="r1",
            amount=amount,  # type: ignore[arg-type]
            idempotency_key="k",
            reference="payment:x",
        )
    assert row_counts(db) == (0, 0, 0)


def test_a_refusal_leaves_the_callers_transaction_usable(db: Database) -> None:
    with db.transaction() as s:
        post(s, RECEIVED, "r1", "pay:1", "payment:1")
        with pytest.raises(InsufficientDeposit):
            post(s, REFUNDED, "r1", "refund:big", "refund:big", amount=9000)
        post(s, REFUNDED, "r1", "refund:1", "refund:1")
    with db.transaction() as s:
        assert [e.kind for e in service.entries_for_rider(s, "r1")] == [RECEIVED, REFUNDED]
        assert service.check_invariants(s) == []


def test_rolling_back_the_callers_transaction_undoes_the_posted_entry(db: Database) -> None:
    class Boom(Exception):
        pass

    def post_then_fail() -> None:
        with db.transaction() as s:
            post(s, RECEIVED, "r1", "pay:1", "payment:1")
            raise Boom

    with pytest.raises(Boom):
        post_then_fail()
    assert row_counts(db) == (0, 0, 0)


def test_losing_the_race_on_the_unique_key_returns_the_winners_entry(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window the UNIQUE constraint closes: the loser looked the key up before the
    winner committed, so its own insert hits the constraint inside the savepoint."""
    with db.transaction() as s:
        winner = post(s, RECEIVED, "r1", "pay:1", "payment:1").id

    real_find = repository.find_entry
    misses = iter([None])
    monkeypatch.setattr(
        repository, "find_entry", lambda session, key: next(misses, None) or real_find(session, key)
    )
    with db.transaction() as s:
        loser = post(s, RECEIVED, "r1", "pay:1", "payment:1").id
        post(s, RECEIVED, "r2", "pay:2", "payment:2")  # the transaction is still usable

    assert loser == winner
    assert row_counts(db)[1] == 2
    with db.transaction() as s:
        assert service.rider_deposit(s, "r1") == DEPOSIT
        assert service.check_invariants(s) == []


def test_check_invariants_names_an_unbalanced_entry_and_a_rider_owed_less_than_zero(
    db: Database,
) -> None:
    with db.transaction() as s:
        post(s, RECEIVED, "r1", "pay:1", "payment:1")
    with db.sessions() as s:  # rows the service would never write; rolled back at the end
        if db.engine.dialect.name == "postgresql":  # a hand edit past PostgreSQL's own guard
            s.execute(text("ALTER TABLE ledger_postings DISABLE TRIGGER ledger_entries_balance"))
        now = clock.now()
        s.add(
            JournalEntry(
                kind=REFUNDED,
                idempotency_key="forged",
                rider_id="r1",
                amount_fen=5000,  # and it claims more than its postings move
                reference="refund:forged",
                created_at=now,
                postings=[
                    Posting(account_code="rider:r1:deposit", amount_fen=4000),
                    Posting(account_code=WECHAT_DEPOSITS_HELD, amount_fen=-3999),
                ],
            )
        )
        problems = service.check_invariants(s)
        s.rollback()
    assert len(problems) == 4, problems
    assert problems[0].startswith("1 entries that do not balance")
    assert "riders owed less than zero" in problems[1]
    assert "('rider:r1:deposit', 1000)" in problems[1]
    assert problems[2] == "deposits received 3000 != held -1000 + refunded 5000 + forfeited 0 (fen)"
    assert problems[3] == "wechat:deposits_held holds -999 fen but riders are owed -1000 fen"


@postgresql_only
def test_two_threads_posting_the_same_key_at_once_produce_one_entry(db: Database) -> None:
    threads = 8
    barrier = threading.Barrier(threads)

    def notify() -> int:
        with db.transaction() as s:
            barrier.wait(timeout=10)
            return post(s, RECEIVED, "r1", "wxpay:notify:T1", "payment:T1").id

    with ThreadPoolExecutor(threads) as pool:
        ids = [f.result(timeout=30) for f in [pool.submit(notify) for _ in range(threads)]]

    assert len(set(ids)) == 1
    assert row_counts(db)[1:] == (1, 2)
    with db.transaction() as s:
        assert service.rider_deposit(s, "r1") == DEPOSIT
        assert service.check_invariants(s) == []


@postgresql_only
def test_two_concurrent_refunds_of_one_deposit_refund_it_once(db: Database) -> None:
    with db.transaction() as s:
        post(s, RECEIVED, "r1", "pay:1", "payment:1")
    barrier = threading.Barrier(2)

    def refund(n: int) -> str:
        try:
            with db.transaction() as s:
                barrier.wait(timeout=10)
                post(s, REFUNDED, "r1", f"refund:{n}", f"refund:{n}")
        except InsufficientDeposit:
            return "refused"
        return "refunded"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(refund, (1, 2)))

    assert outcomes == ["refunded", "refused"]
    with db.transaction() as s:
        assert service.rider_deposit(s, "r1") == 0
        assert service.check_invariants(s) == []


@postgresql_only
def test_postgresql_refuses_to_commit_an_entry_that_does_not_balance(db: Database) -> None:
    with db.transaction() as s:
        post(s, RECEIVED, "r1", "pay:1", "payment:1")
    with pytest.raises(IntegrityError, match="does not balance"), db.transaction() as s:
        s.add(
            JournalEntry(
                kind=RECEIVED,
                idempotency_key="forged",
                rider_id="r1",
                amount_fen=3000,
                reference="payment:forged",
                created_at=clock.now(),
                postings=[Posting(account_code=WECHAT_DEPOSITS_HELD, amount_fen=3000)],
            )
        )
    assert row_counts(db)[1:] == (1, 2)


@postgresql_only
def test_postgresql_refuses_a_posting_that_unbalances_a_committed_entry(db: Database) -> None:
    """The balance check covers every entry an INSERT touches, old ones too: one more leg
    on a committed deposit would make the rider owe 3,000 fen more than was paid."""
    with db.transaction() as s:
        post(s, RECEIVED, "r1", "pay:1", "payment:1")
        entry_id = s.scalars(select(JournalEntry.id)).one()
    with pytest.raises(IntegrityError, match="does not balance"), db.transaction() as s:
        s.add(Posting(entry_id=entry_id, account_code="rider:r1:deposit", amount_fen=-3000))
    assert row_counts(db)[1:] == (1, 2)
    with db.transaction() as s:
        assert service.rider_deposit(s, "r1") == 3000
        assert service.check_invariants(s) == []


@postgresql_only
def test_postgresql_refuses_to_edit_or_delete_a_posting(db: Database) -> None:
    with db.transaction() as s:
        post(s, RECEIVED, "r1", "pay:1", "payment:1")
    with pytest.raises(IntegrityError, match="append-only"), db.transaction() as s:
        s.execute(update(Posting).values(amount_fen=Posting.amount_fen * 2))
