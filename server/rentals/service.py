"""Rental use cases (SPEC §2): rent with a confirmed eject, return anywhere, operator end.

Renting spans a device round trip, so it is three short units of work rather than one long
transaction: reserve (commit, so the bridge can match the kiosk's answer), unlock through the
command channel, settle the answer. The rent takes the kiosk's answer as soon as a bridge has
decoded it, not once the bridge has committed it, so the bridge's batch is off the rider's
path. Whatever happens between them, the rental ends in one state, decided under the
rental's row lock: the API's answer and the kiosk's slot event, which may arrive at another
process, meet there. The bridge side (`apply_slot_changes`)
runs inside the bridge batch's transaction and flushes, never commits.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from firmware_protocol.messages import CmdOp, CmdResult, SlotEventKind
from server.core.clock import clock
from server.core.db import Database
from server.core.errors import Conflict, NotFound
from server.core.money import Fen
from server.kiosk_state.service import SlotActivity, kiosk_time
from server.ledger import service as ledger
from server.ledger.service import Forfeiture
from server.models import (
    AuditLog,
    DepositStatus,
    EntryKind,
    Rental,
    RentalStatus,
    UmbrellaState,
)
from server.models.deposit import DepositPayment
from server.notifications import repository as outbox
from server.notifications import rules as notes
from server.notifications import service as notifications
from server.rentals import repository as repo
from server.rentals import rules
from server.rentals.rules import Failure, Next, ReturnEffect

if TYPE_CHECKING:
    from server.bridge.commands import CommandChannel, PreparedCommand

log = logging.getLogger(__name__)

#: A kiosk timestamp later than our receipt by more than this is a fast clock: we use the
#: receipt time instead (a return cannot have been seen after we heard of it).
FUTURE_TOLERANCE = timedelta(seconds=60)
_POLL_S = 0.05


class RentalFailed(Conflict):
    """The rental did not start; nothing was charged and nothing is left open."""

    def __init__(self, failure: Failure, rental_id: int | None = None, **details: object) -> None:
        super().__init__(rules.FAILURE_MESSAGES[failure], rental_id=rental_id, **details)
        self.code = failure.value
        self.failure = failure
        self.status_code = 504 if failure is Failure.KIOSK_TIMEOUT else 409


class DepositRequired(Conflict):
    code = "deposit_required"


class RentalOpen(Conflict):
    code = "rental_open"


class UnknownKiosk(NotFound):
    code = "unknown_kiosk"


class NotEndable(Conflict):
    code = "rental_not_endable"


@dataclass(frozen=True)
class RentResult:
    rental: Rental
    #: False when the Idempotency-Key found an earlier request's rental.
    created: bool


@dataclass
class _Attempt:
    rental_id: int
    kiosk_id: str
    slot_no: int
    cmd_id: str
    tried: set[int] = field(default_factory=set)
    #: The unlock's command record, written in the same transaction as the rental.
    command: PreparedCommand | None = None
    #: The kiosk's clock skew when reserved (a retried unlock's expiry uses it too).
    skew_ms: int | None = None


def _prepare_unlock(session: Session, attempt: _Attempt, expires_in_s: float) -> PreparedCommand:
    """Record the unlock command in the caller's transaction, so the commit that makes the
    rental visible to the bridge also holds the command (one commit fewer per rent)."""
    # Imported here: server.bridge.commands -> server.bridge.dispatch -> this module.
    from server.bridge.commands import prepare

    return prepare(
        session,
        attempt.kiosk_id,
        CmdOp.UNLOCK,
        attempt.slot_no,
        expires_in_s=expires_in_s,
        skew_ms=attempt.skew_ms,
        cmd_id=attempt.cmd_id,
    )


def rent(
    db: Database,
    channel: CommandChannel,
    rider_id: int,
    kiosk_id: str,
    idempotency_key: str,
    *,
    answer_wait_s: float,
    command_expiry_s: float,
) -> RentResult:
    """Rent an umbrella at `kiosk_id` (SPEC §2 Rent). Returns the rental once it is active;
    raises `RentalFailed` (with the reason) when it did not start. The same Idempotency-Key
    returns the same rental (waiting for its outcome if it is still being unlocked)."""
    with db.transaction(immediate=True) as session:
        reserved = _reserve(session, rider_id, kiosk_id, idempotency_key, command_expiry_s)
    if isinstance(reserved, int):
        settled = _await_settled(db, reserved, answer_wait_s + 5.0)
        return RentResult(_outcome(settled), created=False)
    attempt = reserved

    while True:
        try:
            assert attempt.command is not None  # recorded with the reservation or the retry
            # The kiosk's word as soon as a bridge has decoded it: this request settles it
            # under the rental's lock, so the bridge's batch is not on the rider's path.
            result = channel.send_prepared(attempt.command, timeout_s=answer_wait_s, applied=False)
        except Exception:
            # The broker did not take the unlock: nothing can open, so nothing stays open.
            with db.transaction(immediate=True) as session:
                _settle_answer(session, attempt, None, command_expiry_s)
            raise
        with db.transaction(immediate=True) as session:
            rental, again = _settle_answer(session, attempt, result, command_expiry_s)
        if not again:
            return RentResult(_outcome(rental), created=True)


def _outcome(rental: Rental) -> Rental:
    if rental.status is RentalStatus.FAILED:
        try:
            failure = Failure(rental.reason or "")
        except ValueError:  # ended by an operator: the reason is theirs
            failure = Failure.REFUSED
        raise RentalFailed(failure, rental.id, kiosk_id=rental.kiosk_id)
    if rental.status is RentalStatus.EJECTING:
        raise RentalFailed(Failure.KIOSK_TIMEOUT, rental.id, kiosk_id=rental.kiosk_id)
    return rental


def _reserve(
    session: Session,
    rider_id: int,
    kiosk_id: str,
    idempotency_key: str,
    command_expiry_s: float,
) -> _Attempt | int:
    """Pick a slot, record the rental `ejecting` and its unlock command; or the id of the
    rental an earlier request with the same key made."""
    payment = repo.lock_held_payment(session, rider_id)
    # The lock serializes this rider's requests, so a twin request (same key) has committed
    # its rental by now: the key and an open rental are looked up in one statement.
    existing, current = repo.rider_rentals(session, rider_id, idempotency_key)
    if existing is not None:
        return existing.id
    kiosk, rentable = repo.kiosk_for_rent(session, kiosk_id)
    if not kiosk.registered:
        raise UnknownKiosk(f"no kiosk {kiosk_id!r}", kiosk_id=kiosk_id)
    if not kiosk.online:
        raise RentalFailed(Failure.KIOSK_OFFLINE, kiosk_id=kiosk_id)
    if payment is None:
        raise DepositRequired("pay the 30-yuan deposit before renting", rider_id=rider_id)
    if current is not None:
        raise RentalOpen(
            "you already have an umbrella (or one is being unlocked); return it first",
            rental_id=current.id,
        )
    now = clock.now()
    taken: set[int] = set()
    while True:
        picked = rules.pick_slot(rentable, exclude=taken)
        if picked is None:
            raise RentalFailed(Failure.NO_UMBRELLA, kiosk_id=kiosk_id)
        slot_no, tag = picked
        cmd_id = uuid.uuid4().hex
        rental_id = repo.insert_rental(
            session,
            {
                "rider_id": rider_id,
                "idempotency_key": idempotency_key,
                "deposit_payment_id": payment.id,
                "deposit_fen": payment.amount_fen,
                "status": RentalStatus.EJECTING,
                "kiosk_id": kiosk_id,
                "slot_no": slot_no,
                "cmd_id": cmd_id,
                "attempts": 1,
                "umbrella_tag": tag,
                "created_at": now,
                "updated_at": now,
                "reminders_sent": 0,
            },
        )
        if rental_id is None:
            # Another rider's unlock took this slot a moment ago (uq_rentals_one_eject_per_slot),
            # or this rider's other request won (one open rental, same key): look again.
            if any(repo.rider_rentals(session, rider_id, idempotency_key)):
                raise RentalOpen("another request of yours is renting right now")
            taken.add(slot_no)
            rentable = repo.rentable_slots(session, kiosk_id)
            continue
        attempt = _Attempt(
            rental_id, kiosk_id, slot_no, cmd_id, {slot_no}, skew_ms=kiosk.clock_skew_ms
        )
        attempt.command = _prepare_unlock(session, attempt, command_expiry_s)
        return attempt


def _settle_answer(
    session: Session, attempt: _Attempt, result: CmdResult | None, command_expiry_s: float
) -> tuple[Rental, bool]:
    """Apply the kiosk's answer (or its silence) under the rental's lock; True = send another
    unlock (attempt updated in place, its command recorded in this transaction)."""
    outcome = rules.unlock_outcome(None if result is None else result.status)
    now = clock.now()
    if outcome.next is Next.ACTIVATE:
        assert result is not None
        # The SlotEvent `out` (seq before the result) carries the exact moment; when the
        # bridge applies it, after this, it moves started_at back to that moment. As there,
        # a kiosk clock running ahead cannot push the start past when we heard of it.
        started_at = min(kiosk_time(result.ts_ms), now + FUTURE_TOLERANCE)
        activated = repo.activate_if_ejecting(
            session,
            attempt.rental_id,
            attempt.cmd_id,
            started_at=started_at,
            deadline_at=rules.deadline_for(started_at),
            tag=None if result.tag is None else result.tag.hex().upper(),
            now=now,
        )
        if activated is not None:
            _activated(session, activated, now)
            return activated, False
        # The slot event got here first (activated), or it already ended; only this request
        # could put it back to waiting for this unlock.
        rental = repo.by_id(session, attempt.rental_id)
        assert rental is not None
        return rental, False
    rental = repo.by_id(session, attempt.rental_id, lock=True)
    assert rental is not None
    if rental.status is not RentalStatus.EJECTING or rental.cmd_id != attempt.cmd_id:
        return rental, False  # the slot event got here first (activated), or it already ended
    if outcome.next is Next.TRY_ANOTHER_SLOT and rental.attempts < rules.MAX_EJECT_ATTEMPTS:
        while True:
            picked = rules.pick_slot(
                repo.rentable_slots(session, rental.kiosk_id), exclude=attempt.tried
            )
            if picked is None:
                break
            slot_no, tag = picked
            attempt.tried.add(slot_no)
            try:
                with session.begin_nested():
                    rental.slot_no = slot_no
                    rental.umbrella_tag = tag
                    rental.cmd_id = uuid.uuid4().hex
                    rental.attempts += 1
                    rental.updated_at = now
                    session.flush()
            except IntegrityError:
                session.refresh(rental)
                continue
            assert rental.cmd_id is not None
            attempt.slot_no, attempt.cmd_id = slot_no, rental.cmd_id
            attempt.command = _prepare_unlock(session, attempt, command_expiry_s)
            log.info(
                "rental %s: slot answered %s, trying slot %s",
                rental.id,
                result and result.status,
                slot_no,
            )
            return rental, True
    failure = outcome.failure or Failure.REFUSED
    rental.status = RentalStatus.FAILED
    rental.reason = failure.value
    rental.ended_at = now
    rental.updated_at = now
    session.flush()
    return rental, False


def _await_settled(db: Database, rental_id: int, wait_s: float) -> Rental:
    """A repeated request (same Idempotency-Key) while the first is still unlocking: wait for
    the first one's outcome rather than send a second unlock."""
    deadline = time.monotonic() + wait_s
    while True:
        with db.transaction() as session:
            rental = repo.by_id(session, rental_id)
        assert rental is not None
        if rental.status is not RentalStatus.EJECTING or time.monotonic() >= deadline:
            return rental
        time.sleep(_POLL_S)


def _activate(
    session: Session, rental: Rental, started_at: datetime, tag: str | None, now: datetime
) -> None:
    """The kiosk confirmed the umbrella left the slot (SPEC §2): the free window starts at the
    kiosk's timestamp. Idempotent; an earlier timestamp for an active rental wins."""
    if rental.status is RentalStatus.ACTIVE:
        if rental.started_at is not None and started_at < rental.started_at:
            rental.started_at = started_at
            rental.deadline_at = rules.deadline_for(started_at)
            rental.updated_at = now
        return
    if rental.status is RentalStatus.FAILED:
        # The kiosk gave the umbrella after we stopped waiting (a lost or late answer): the
        # umbrella is with this rider, so the rental is real, unless the rider has since
        # started another one (then the umbrella is unaccounted for: lost, for operators).
        if repo.open_rental(session, rental.rider_id) is not None:
            log.error("rental %s: umbrella left the slot late, rider has another rental", rental.id)
            if tag:
                repo.set_umbrella(session, tag, UmbrellaState.LOST, now)
            return
    elif rental.status is not RentalStatus.EJECTING:
        return
    rental.status = RentalStatus.ACTIVE
    rental.reason = None
    rental.ended_at = None
    rental.started_at = started_at
    rental.deadline_at = rules.deadline_for(started_at)
    rental.umbrella_tag = tag or rental.umbrella_tag
    rental.updated_at = now
    session.flush()
    _activated(session, rental, now)


def _activated(session: Session, rental: Rental, now: datetime) -> None:
    """What follows a rental becoming active: its umbrella is on rent, the rider is told."""
    assert rental.started_at is not None
    assert rental.deadline_at is not None
    if rental.umbrella_tag:
        repo.set_umbrella(session, rental.umbrella_tag, UmbrellaState.ON_RENT, now)
    notifications.enqueue(
        session,
        rental.rider_id,
        notes.RENTAL_STARTED,
        f"rental:{rental.id}",
        {
            "rental_id": rental.id,
            "kiosk_id": rental.kiosk_id,
            "started_at": rental.started_at.isoformat(),
            "deadline_at": rental.deadline_at.isoformat(),
        },
    )


def _end(
    session: Session,
    rental: Rental,
    effect: ReturnEffect,
    seen_at: datetime,
    kiosk_id: str,
    slot_no: int,
    now: datetime,
) -> None:
    if effect is ReturnEffect.NONE:
        return
    rental.returned_at = seen_at
    rental.return_kiosk_id = kiosk_id
    rental.return_slot_no = slot_no
    rental.updated_at = now
    if effect is ReturnEffect.FORFEIT_AND_RESTOCK:
        _forfeit(session, rental, now)
        effect = ReturnEffect.RESTOCK_ONLY
    if effect is ReturnEffect.RESTOCK_ONLY:
        session.flush()
        log.info("rental %s: umbrella back after the deadline; deposit stays forfeited", rental.id)
        return
    rental.status = RentalStatus.RETURNED
    rental.ended_at = now
    session.flush()
    subject = f"rental:{rental.id}"
    if effect is ReturnEffect.END_AND_REVERSE:
        # SPEC §2: a return the kiosk saw before the deadline undoes the forfeiture.
        ledger.post(
            session,
            EntryKind.FORFEITURE_REVERSED,
            rider_id=str(rental.rider_id),
            amount=Fen(rental.deposit_fen),
            idempotency_key=f"unforfeit:{subject}",
            reference=subject,
        )
        payment = session.get(DepositPayment, rental.deposit_payment_id, with_for_update=True)
        if payment is not None and payment.status is DepositStatus.FORFEITED:
            payment.status = DepositStatus.HELD
        notifications.enqueue(
            session,
            rental.rider_id,
            notes.FORFEITURE_REVERSED,
            subject,
            {
                "rental_id": rental.id,
                "amount_fen": rental.deposit_fen,
                "returned_at": seen_at.isoformat(),
            },
        )
    notifications.enqueue(
        session,
        rental.rider_id,
        notes.RENTAL_RETURNED,
        subject,
        {"rental_id": rental.id, "kiosk_id": kiosk_id, "returned_at": seen_at.isoformat()},
    )


def forfeit(session: Session, due: Sequence[repo.DueRental], now: datetime) -> list[repo.DueRental]:
    """Forfeit the deposits of rentals past their deadline (SPEC §2 Automatic forfeiture),
    set-wise: ledger `deposit_forfeited` keyed `forfeit:rental:<id>` (so the sweep and a late
    return can never both move the money), rental and deposit `forfeited`, umbrella the
    rider's, the rider told. The caller holds the rentals locked. Returns those forfeited: a
    rental the ledger refuses (it disagrees with the rental: a bug or a hand edit) stays
    active and shows up in the stuck view rather than move money twice."""
    posted = {
        f.reference
        for f in ledger.post_forfeitures(
            session,
            [
                Forfeiture(
                    rider_id=str(r.rider_id),
                    amount=Fen(r.deposit_fen),
                    idempotency_key=f"forfeit:rental:{r.id}",
                    reference=f"rental:{r.id}",
                )
                for r in due
            ],
        )
    }
    done = [r for r in due if f"rental:{r.id}" in posted]
    repo.mark_forfeited(session, done, now)
    outbox.insert_pending(
        session,
        [
            {
                "rider_id": r.rider_id,
                "kind": notes.DEPOSIT_FORFEITED,
                "dedup_key": notes.dedup_key(notes.DEPOSIT_FORFEITED, f"rental:{r.id}"),
                "payload": json.dumps(
                    {
                        "rental_id": r.id,
                        "amount_fen": r.deposit_fen,
                        "deadline_at": None if r.deadline_at is None else r.deadline_at.isoformat(),
                    },
                    sort_keys=True,
                ),
                "now": now,
            }
            for r in done
        ],
    )
    return done


def _forfeit(session: Session, rental: Rental, now: datetime) -> None:
    """A late return that reaches us before the sweep: forfeit first, exactly as the sweep
    would (the same `forfeit`), then the return restocks the umbrella."""
    due = repo.DueRental(
        rental.id,
        rental.rider_id,
        rental.deposit_fen,
        rental.deposit_payment_id,
        rental.umbrella_tag,
        rental.deadline_at,
    )
    if forfeit(session, [due], now):
        # The set-wise UPDATE does not refresh the loaded object.
        rental.status = RentalStatus.FORFEITED
        rental.forfeited_at = now


# --------------------------------------------------------------------------- bridge side


def apply_slot_activity(session: Session, activity: SlotActivity) -> None:
    """The bridge's hook (`KioskStateService.on_slots`), in its batch transaction, with the
    batch's new slot events (in seq order) and changed slot rows: umbrellas are registered
    and located, an unlock that released an umbrella activates its rental, an inserted
    umbrella ends its rental at the kiosk's timestamp (SPEC §2 Return anywhere)."""
    events = activity.events
    # Lock order, the same everywhere: rentals, then umbrellas, deposits and the ledger (the
    # forfeiture sweep locks its rentals first too), so the two never deadlock.
    by_cmd = repo.rentals_by_cmd(
        session,
        {ev.cmd_id for ev, *_ in events if ev.kind is SlotEventKind.REMOVED and ev.cmd_id},
    )
    by_tag = repo.returnable_by_tag(
        session, {tag for ev, tag, *_ in events if ev.kind is SlotEventKind.INSERTED and tag}
    )
    now = clock.now()
    repo.upsert_umbrellas(
        session,
        [
            {
                "tag": tag,
                "kiosk_id": kiosk_id,
                "slot_no": slot_no,
                "state": UmbrellaState.IN_SLOT,
                "now": now,
                "sticky": True,
            }
            for kiosk_id, slot_no, tag in activity.changed
            if tag
        ],
    )
    if not events:
        return
    for ev, tag, kiosk_seen_at, received_at in events:
        # A kiosk clock running ahead cannot push a moment past when we heard of it.
        seen_at = min(kiosk_seen_at, received_at + FUTURE_TOLERANCE)
        if ev.kind is SlotEventKind.REMOVED:
            rental = by_cmd.get(ev.cmd_id) if ev.cmd_id else None
            if rental is not None and rental.kiosk_id == ev.kiosk_id:
                _activate(session, rental, seen_at, tag, now)
                if rental.status is RentalStatus.ACTIVE and rental.umbrella_tag:
                    by_tag[rental.umbrella_tag] = rental
            elif tag:
                # Out of a slot without an unlock of ours: forced, or taken by staff.
                repo.set_umbrella(session, tag, UmbrellaState.LOST, now)
            continue
        if not tag:
            continue
        rental = by_tag.pop(tag, None)
        if rental is not None:
            # Never before the rental began (a kiosk clock running behind).
            seen_at = max(seen_at, rental.started_at or seen_at)
            effect = rules.return_effect(rental.status, rental.deadline_at, seen_at)
            _end(session, rental, effect, seen_at, ev.kiosk_id, ev.slot, now)
        repo.set_umbrella(
            session, tag, UmbrellaState.IN_SLOT, now, kiosk_id=ev.kiosk_id, slot_no=ev.slot
        )
    session.flush()


# --------------------------------------------------------------------------- operators


def force_end(session: Session, rental_id: int, *, reason: str, actor: str) -> Rental:
    """An operator ends a rental that is stuck (SPEC §2 operations); kept in the audit log.
    An unlock still pending is failed; an active rental ends without forfeiture."""
    rental = repo.by_id(session, rental_id, lock=True)
    if rental is None:
        raise NotFound(f"no rental {rental_id}", rental_id=rental_id)
    if rental.status not in (RentalStatus.EJECTING, RentalStatus.ACTIVE):
        raise NotEndable(
            f"rental {rental_id} is {rental.status.value}; only an ejecting or active rental "
            "can be ended",
            rental_id=rental_id,
            status=rental.status.value,
        )
    now = clock.now()
    before = rental.status
    rental.status = RentalStatus.FAILED if before is RentalStatus.EJECTING else RentalStatus.ENDED
    rental.reason = reason[:255]
    rental.ended_at = now
    rental.updated_at = now
    if before is RentalStatus.ACTIVE and rental.umbrella_tag:
        umbrella = repo.umbrella(session, rental.umbrella_tag)
        if umbrella is not None and umbrella.state is UmbrellaState.ON_RENT:
            repo.set_umbrella(session, rental.umbrella_tag, UmbrellaState.LOST, now)
    repo.add_audit(
        session,
        AuditLog(
            actor=actor,
            action="rental.force_end",
            subject=f"rental:{rental.id}",
            reason=reason,
            detail=f"status {before.value} -> {rental.status.value}",
            created_at=now,
        ),
    )
    if before is RentalStatus.ACTIVE:
        notifications.enqueue(
            session,
            rental.rider_id,
            notes.RENTAL_ENDED_BY_OPERATOR,
            f"rental:{rental.id}",
            {"rental_id": rental.id, "reason": reason[:100]},
        )
    session.flush()
    return rental


def current_rental(session: Session, rider_id: int) -> Rental | None:
    return repo.open_rental(session, rider_id)


def history(
    session: Session, rider_id: int, *, limit: int = 20, before_id: int | None = None
) -> Sequence[Rental]:
    return repo.history(session, rider_id, limit=limit, before_id=before_id)


def get_for_rider(session: Session, rider_id: int, rental_id: int) -> Rental:
    rental = repo.by_id(session, rental_id)
    if rental is None or rental.rider_id != rider_id:
        # Another rider's rental is as invisible as a missing one.
        raise NotFound(f"no rental {rental_id}", rental_id=rental_id)
    return rental


def stuck_rentals(
    session: Session, *, ejecting_for: timedelta, overdue_for: timedelta, limit: int = 100
) -> dict[str, Sequence[Rental]]:
    """Rentals stuck in a state: unlocks unanswered for `ejecting_for`; active rentals past
    their deadline by `overdue_for` (the sweep is behind); active rentals whose umbrella is
    back in a slot (the return event never came)."""
    now = clock.now()
    return repo.stuck(
        session, ejecting_before=now - ejecting_for, overdue_before=now - overdue_for, limit=limit
    )
