"""Rentals on the bridge side and in the scheduled jobs, on SQLite and PostgreSQL.

Kiosk messages are injected into a real `Dispatcher` (no broker: tests/e2e covers that
path). `AnsweringKiosk` plays the kiosk and the broker for `rentals.service.rent`: it injects
the slot event and the result a kiosk sends for an unlock, then hands back the result the
way the command channel would.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import func, select

from firmware_protocol.messages import (
    CmdOp,
    CmdResult,
    CmdStatus,
    Heartbeat,
    SlotEvent,
    SlotEventKind,
    SlotState,
)
from server.bridge.commands import CommandChannel, PreparedCommand
from server.bridge.dispatch import Dispatcher, inject
from server.core.clock import clock, from_ms, to_ms
from server.core.db import Database
from server.core.money import DEPOSIT
from server.core.shared_state import MemorySharedState
from server.ledger import service as ledger
from server.models import (
    DepositPayment,
    DepositStatus,
    EntryKind,
    JournalEntry,
    Notification,
    Rental,
    RentalStatus,
    Umbrella,
    UmbrellaState,
)
from server.rentals import jobs, rules, service
from server.rentals.rules import Failure
from server.rentals.service import RentalFailed
from tests.integration.rows import add_kiosks, add_rider_with_deposit

K1, K2 = "K0001", "K0002"
TAGS = {n: f"A{n:07X}" for n in range(1, 23)}


@dataclass
class AnsweringKiosk:
    """Answers unlocks like a kiosk whose rider takes the umbrella, unless told otherwise
    per slot (`answers[slot] = CmdStatus`, or None for silence)."""

    dispatcher: Dispatcher
    seq: dict[str, int] = field(default_factory=lambda: {K1: 1000, K2: 1000})
    answers: dict[int, CmdStatus | None] = field(default_factory=dict)
    sent: list[tuple[str, int | None]] = field(default_factory=list)
    #: What each slot holds: (kiosk, slot) -> tag.
    contents: dict[tuple[str, int], str] = field(
        default_factory=lambda: {(K1, n): TAGS[n] for n in (1, 2, 3)}
    )

    def next_seq(self, kiosk: str) -> int:
        self.seq[kiosk] += 1
        return self.seq[kiosk]

    def send_prepared(self, command: PreparedCommand, **_: Any) -> CmdResult | None:
        kiosk_id, slot, cmd_id = command.kiosk_id, command.slot, command.cmd_id
        self.sent.append((kiosk_id, slot))
        assert command.op is CmdOp.UNLOCK
        assert slot is not None
        status = self.answers.get(slot, CmdStatus.TAKEN)
        if status is None:
            return None
        now = clock.now_ms()
        tag = bytes.fromhex(self.contents[(kiosk_id, slot)])
        messages: list[Any] = []
        if status is CmdStatus.TAKEN:
            del self.contents[(kiosk_id, slot)]
            messages.append(
                SlotEvent(
                    kiosk_id,
                    self.next_seq(kiosk_id),
                    now,
                    slot,
                    SlotEventKind.REMOVED,
                    tag,
                    cmd_id=cmd_id,
                )
            )
        result = CmdResult(
            kiosk_id,
            self.next_seq(kiosk_id),
            now + 1,
            cmd_id,
            status,
            slot=slot,
            tag=tag if status is CmdStatus.TAKEN else None,
        )
        inject(self.dispatcher, *messages, result)
        return result

    def insert(self, kiosk: str, slot: int, tag: str, at: datetime) -> None:
        """A rider puts an umbrella into a slot; the kiosk's clock reads `at`."""
        self.contents[(kiosk, slot)] = tag
        inject(
            self.dispatcher,
            SlotEvent(
                kiosk,
                self.next_seq(kiosk),
                to_ms(at),
                slot,
                SlotEventKind.INSERTED,
                bytes.fromhex(tag),
            ),
        )


@pytest.fixture
def kiosk(db: Database) -> AnsweringKiosk:
    add_kiosks(db, K1, K2)
    dispatcher = Dispatcher(db, MemorySharedState())
    now = clock.now_ms()
    # K1 boots full of umbrellas (slots 1..3), K2 empty.
    inject(
        dispatcher,
        Heartbeat(
            K1,
            1,
            now,
            -60,
            tuple(SlotState(tag=bytes.fromhex(TAGS[n]) if n <= 3 else None) for n in range(1, 23)),
        ),
        Heartbeat(K2, 1, now, -60, tuple(SlotState(tag=None) for _ in range(22))),
    )
    from firmware_protocol.messages import Online

    inject(dispatcher, Online(K1, 0, now, 1), Online(K2, 0, now, 1))
    return AnsweringKiosk(dispatcher)


def rent(db: Database, kiosk: AnsweringKiosk, rider: int, key: str = "k1", at: str = K1) -> Rental:
    return service.rent(
        db, cast(CommandChannel, kiosk), rider, at, key, answer_wait_s=1.0, command_expiry_s=1.0
    ).rental


def reload(db: Database, rental_id: int) -> Rental:
    with db.transaction() as s:
        found = s.get(Rental, rental_id)
        assert found is not None
        return found


def umbrella(db: Database, tag: str) -> Umbrella:
    with db.transaction() as s:
        found = s.get(Umbrella, tag)
        assert found is not None
        return found


def held(db: Database, rider: int) -> int:
    with db.transaction() as s:
        return int(ledger.rider_deposit(s, str(rider)))


def invariants(db: Database) -> list[str]:
    with db.transaction() as s:
        return ledger.check_invariants(s)


def entries(db: Database, kind: EntryKind) -> int:
    with db.transaction() as s:
        return int(
            s.scalar(
                select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == kind)
            )
            or 0
        )


def forfeit(db: Database, at: datetime) -> int:
    with db.transaction(immediate=True) as s:  # as the scheduler runs it
        return jobs.forfeit_overdue(s, at)


def test_umbrellas_seen_in_slots_are_registered_in_stock(
    db: Database, kiosk: AnsweringKiosk
) -> None:
    u = umbrella(db, TAGS[2])
    assert (u.state, u.kiosk_id, u.slot_no) == (UmbrellaState.IN_SLOT, K1, 2)


def test_rental_starts_at_the_kiosks_timestamp_and_a_return_anywhere_ends_it(
    db: Database, kiosk: AnsweringKiosk
) -> None:
    rider = add_rider_with_deposit(db, "o-happy")
    rental = rent(db, kiosk, rider)
    assert rental.status is RentalStatus.ACTIVE
    assert (rental.slot_no, rental.umbrella_tag) == (1, TAGS[1])
    assert rental.started_at is not None
    assert rental.deadline_at == rental.started_at + rules.FREE_WINDOW
    assert umbrella(db, TAGS[1]).state is UmbrellaState.ON_RENT

    clock.advance(timedelta(hours=3))
    seen = from_ms(clock.now_ms())  # kiosk timestamps are whole milliseconds
    kiosk.insert(K2, 5, TAGS[1], seen)

    back = reload(db, rental.id)
    assert (back.status, back.returned_at, back.return_kiosk_id, back.return_slot_no) == (
        RentalStatus.RETURNED,
        seen,
        K2,
        5,
    )
    u = umbrella(db, TAGS[1])
    assert (u.state, u.kiosk_id, u.slot_no) == (UmbrellaState.IN_SLOT, K2, 5)
    assert held(db, rider) == DEPOSIT
    assert invariants(db) == []


def test_forfeiture_at_the_deadline_happens_once_even_when_the_sweep_runs_twice(
    db: Database, kiosk: AnsweringKiosk
) -> None:
    rider = add_rider_with_deposit(db, "o-forfeit")
    rental = rent(db, kiosk, rider)
    assert rental.deadline_at is not None
    assert forfeit(db, rental.deadline_at - timedelta(seconds=1)) == 0

    assert forfeit(db, rental.deadline_at) == 1
    assert forfeit(db, rental.deadline_at + timedelta(hours=1)) == 0

    after = reload(db, rental.id)
    assert after.status is RentalStatus.FORFEITED
    assert held(db, rider) == 0
    assert entries(db, EntryKind.DEPOSIT_FORFEITED) == 1
    assert umbrella(db, TAGS[1]).state is UmbrellaState.FORFEITED
    with db.transaction() as s:
        payment = s.scalars(select(DepositPayment).where(DepositPayment.rider_id == rider)).one()
        assert payment.status is DepositStatus.FORFEITED
        kinds = set(s.scalars(select(Notification.kind).where(Notification.rider_id == rider)))
    assert "deposit_forfeited" in kinds
    assert invariants(db) == []


def test_return_seen_before_deadline_but_reported_after_undoes_the_forfeiture(
    db: Database, kiosk: AnsweringKiosk
) -> None:
    rider = add_rider_with_deposit(db, "o-late-report")
    rental = rent(db, kiosk, rider)
    assert rental.deadline_at is not None
    clock.advance(rental.deadline_at + timedelta(minutes=5) - clock.now())
    forfeit(db, clock.now())
    assert held(db, rider) == 0

    # The kiosk was offline: it saw the return a minute before the deadline, reports it now.
    kiosk.insert(K2, 7, TAGS[1], rental.deadline_at - timedelta(minutes=1))

    after = reload(db, rental.id)
    assert after.status is RentalStatus.RETURNED
    assert after.returned_at == rental.deadline_at - timedelta(minutes=1)
    assert held(db, rider) == DEPOSIT
    assert entries(db, EntryKind.FORFEITURE_REVERSED) == 1
    with db.transaction() as s:
        payment = s.scalars(select(DepositPayment).where(DepositPayment.rider_id == rider)).one()
        assert payment.status is DepositStatus.HELD
    assert umbrella(db, TAGS[1]).state is UmbrellaState.IN_SLOT
    assert invariants(db) == []


def test_return_after_the_deadline_restocks_the_umbrella_and_the_deposit_stays_forfeited(
    db: Database, kiosk: AnsweringKiosk
) -> None:
    rider = add_rider_with_deposit(db, "o-too-late")
    rental = rent(db, kiosk, rider)
    assert rental.deadline_at is not None
    clock.advance(timedelta(days=8))
    forfeit(db, clock.now())

    kiosk.insert(K2, 3, TAGS[1], clock.now())

    after = reload(db, rental.id)
    assert after.status is RentalStatus.FORFEITED
    assert after.returned_at is not None
    assert held(db, rider) == 0
    assert entries(db, EntryKind.FORFEITURE_REVERSED) == 0
    u = umbrella(db, TAGS[1])
    assert (u.state, u.kiosk_id, u.slot_no) == (UmbrellaState.IN_SLOT, K2, 3)
    # Back in stock: another rider can rent it at K2.
    other = add_rider_with_deposit(db, "o-next")
    assert rent(db, kiosk, other, at=K2).umbrella_tag == TAGS[1]
    assert invariants(db) == []


def _race(*calls: Callable[[], object]) -> None:
    """Run the calls at once (released by one barrier); re-raise the first failure."""
    go = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            go.wait()
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]


@pytest.mark.parametrize("seen_before_deadline_ms", [1, 0])
def test_return_and_forfeiture_racing_at_the_deadline_produce_exactly_one_outcome(
    db: Database, kiosk: AnsweringKiosk, seen_before_deadline_ms: int
) -> None:
    """The return is reported while the sweep runs; whichever commits first, the outcome is
    decided by when the kiosk saw it: before the deadline = returned with the deposit held;
    at the deadline = forfeited (the deadline instant is already late)."""
    for attempt in range(5):
        rider = add_rider_with_deposit(db, f"o-race-{seen_before_deadline_ms}-{attempt}")
        rental = rent(db, kiosk, rider, key=f"race-{attempt}")
        assert rental.deadline_at is not None
        seen = rental.deadline_at - timedelta(milliseconds=seen_before_deadline_ms)
        clock.advance(rental.deadline_at + timedelta(seconds=1) - clock.now())
        slot = 1 + attempt
        _race(
            lambda: forfeit(db, clock.now()),
            functools.partial(kiosk.insert, K2, slot, TAGS[1], seen),
        )
        forfeit(db, clock.now())  # whatever the racing sweep skipped
        after = reload(db, rental.id)
        if seen_before_deadline_ms:
            assert after.status is RentalStatus.RETURNED
            assert held(db, rider) == DEPOSIT
        else:
            assert after.status is RentalStatus.FORFEITED
            assert held(db, rider) == 0
        assert invariants(db) == []
        # Put the umbrella back in K1 slot 1 for the next round.
        inject(
            kiosk.dispatcher,
            SlotEvent(
                K2,
                kiosk.next_seq(K2),
                clock.now_ms(),
                1 + attempt,
                SlotEventKind.REMOVED,
                bytes.fromhex(TAGS[1]),
            ),
        )
        kiosk.insert(K1, 1, TAGS[1], clock.now())


def test_day_five_and_day_six_reminders_are_queued_once(
    db: Database, kiosk: AnsweringKiosk
) -> None:
    rider = add_rider_with_deposit(db, "o-remind")
    rental = rent(db, kiosk, rider)
    assert rental.started_at is not None

    def run(at: datetime) -> int:
        with db.transaction() as s:
            return jobs.send_reminders(s, at)

    assert run(rental.started_at + timedelta(days=4, hours=23)) == 0
    assert run(rental.started_at + timedelta(days=5)) == 1
    assert run(rental.started_at + timedelta(days=5, hours=12)) == 0
    assert run(rental.started_at + timedelta(days=6)) == 1
    assert run(rental.started_at + timedelta(days=6, hours=1)) == 0
    with db.transaction() as s:
        kinds = sorted(s.scalars(select(Notification.kind).where(Notification.rider_id == rider)))
    assert kinds == ["deadline_day5", "deadline_day6", "rental_started"]


def test_jammed_slot_is_skipped_and_the_next_umbrella_is_unlocked(
    db: Database, kiosk: AnsweringKiosk
) -> None:
    rider = add_rider_with_deposit(db, "o-jam")
    kiosk.answers[1] = CmdStatus.JAMMED
    rental = rent(db, kiosk, rider)
    assert (rental.status, rental.slot_no) == (RentalStatus.ACTIVE, 2)
    assert [s for _, s in kiosk.sent] == [1, 2]
    assert rental.attempts == 2


@pytest.mark.parametrize(
    ("answers", "failure"),
    [
        ({1: None}, Failure.KIOSK_TIMEOUT),
        ({1: CmdStatus.NOT_TAKEN}, Failure.NOT_TAKEN),
        ({1: CmdStatus.EXPIRED}, Failure.KIOSK_TIMEOUT),
        ({1: CmdStatus.JAMMED, 2: CmdStatus.JAMMED, 3: CmdStatus.JAMMED}, Failure.JAMMED),
    ],
)
def test_an_eject_that_fails_charges_nothing_and_leaves_no_open_rental(
    db: Database, kiosk: AnsweringKiosk, answers: dict[int, CmdStatus | None], failure: Failure
) -> None:
    rider = add_rider_with_deposit(db, f"o-fail-{failure}")
    kiosk.answers.update(answers)
    with pytest.raises(RentalFailed) as caught:
        rent(db, kiosk, rider)
    assert caught.value.code == failure.value
    with db.transaction() as s:
        assert service.current_rental(s, rider) is None
        assert [r.status for r in service.history(s, rider)] == [RentalStatus.FAILED]
    assert held(db, rider) == DEPOSIT
    assert umbrella(db, TAGS[1]).state is UmbrellaState.IN_SLOT
    assert invariants(db) == []


def test_operator_force_end_is_audited_and_frees_the_rider(
    db: Database, kiosk: AnsweringKiosk
) -> None:
    rider = add_rider_with_deposit(db, "o-ops")
    rental = rent(db, kiosk, rider)
    with db.transaction() as s:
        service.force_end(
            s, rental.id, reason="rider returned it by hand at the office", actor="ops-1"
        )
    after = reload(db, rental.id)
    assert after.status is RentalStatus.ENDED
    with db.transaction() as s:
        from server.rentals import repository

        audit = repository.audit_for(s, f"rental:{rental.id}")
    assert [(a.actor, a.action) for a in audit] == [("ops-1", "rental.force_end")]
    assert held(db, rider) == DEPOSIT
    assert rent(db, kiosk, rider, key="again").status is RentalStatus.ACTIVE
