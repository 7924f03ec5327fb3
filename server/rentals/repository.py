"""Every query of the rentals domain."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select, text, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from server.core.db import any_of
from server.models import (
    OPEN_STATUSES,
    AuditLog,
    DepositPayment,
    DepositStatus,
    Kiosk,
    KioskState,
    Rental,
    RentalStatus,
    Slot,
    SlotStatus,
    Umbrella,
    UmbrellaState,
)


def by_id(session: Session, rental_id: int, *, lock: bool = False) -> Rental | None:
    stmt = select(Rental).where(Rental.id == rental_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def activate_if_ejecting(
    session: Session,
    rental_id: int,
    cmd_id: str,
    *,
    started_at: datetime,
    deadline_at: datetime,
    tag: str | None,
    now: datetime,
) -> Rental | None:
    """Activate the rental if it is still `ejecting` for this unlock, in one statement that
    takes its row lock, decides and writes (the rent's usual settle); the rental, or None
    when it was no longer waiting for this unlock (the bridge activated it, or it ended)."""
    return session.scalars(
        update(Rental)
        .where(
            Rental.id == rental_id,
            Rental.status == RentalStatus.EJECTING,
            Rental.cmd_id == cmd_id,
        )
        .values(
            status=RentalStatus.ACTIVE,
            reason=None,
            ended_at=None,
            started_at=started_at,
            deadline_at=deadline_at,
            umbrella_tag=func.coalesce(tag, Rental.umbrella_tag),
            updated_at=now,
        )
        .returning(Rental),
        execution_options={"synchronize_session": False},
    ).first()


def open_rental(session: Session, rider_id: int) -> Rental | None:
    return session.scalars(
        select(Rental).where(Rental.rider_id == rider_id, Rental.status.in_(OPEN_STATUSES))
    ).first()


def latest_for_rider(
    session: Session, rider_id: int, statuses: Collection[RentalStatus]
) -> Rental | None:
    return session.scalars(
        select(Rental)
        .where(Rental.rider_id == rider_id, Rental.status.in_(statuses))
        .order_by(Rental.id.desc())
        .limit(1)
    ).first()


def history(
    session: Session, rider_id: int, *, limit: int, before_id: int | None
) -> Sequence[Rental]:
    stmt = select(Rental).where(Rental.rider_id == rider_id)
    if before_id is not None:
        stmt = stmt.where(Rental.id < before_id)
    return session.scalars(stmt.order_by(Rental.id.desc()).limit(limit)).all()


def lock_held_payment(session: Session, rider_id: int) -> DepositPayment | None:
    """The rider's held deposit, row-locked: renting and withdrawing serialize on it."""
    return session.scalars(
        select(DepositPayment)
        .where(DepositPayment.rider_id == rider_id, DepositPayment.status == DepositStatus.HELD)
        .order_by(DepositPayment.id.desc())
        .limit(1)
        .with_for_update()
    ).first()


@dataclass(frozen=True, slots=True)
class KioskPresence:
    registered: bool
    online: bool
    #: The kiosk's known clock skew in ms (commands carry their expiry in kiosk time).
    clock_skew_ms: int | None


def kiosk_for_rent(session: Session, kiosk_id: str) -> tuple[KioskPresence, list[tuple[int, str]]]:
    """Whether the kiosk is registered and online, and its `rentable_slots`, in one
    statement: the kiosk's row joined to each of its rentable slots (or to none)."""
    slots = _rentable_slots_query(kiosk_id).subquery()
    rows = session.execute(
        select(Kiosk.id, KioskState.online, KioskState.clock_skew_ms, slots.c.slot_no, slots.c.tag)
        .outerjoin(KioskState, KioskState.kiosk_id == Kiosk.id)
        .outerjoin(slots, true())
        .where(Kiosk.id == kiosk_id)
    ).all()
    if not rows:
        return KioskPresence(False, False, None), []
    first = rows[0]
    presence = KioskPresence(True, bool(first.online), first.clock_skew_ms)
    return presence, [(r.slot_no, r.tag) for r in rows if r.tag is not None]


def rider_rentals(
    session: Session, rider_id: int, idempotency_key: str
) -> tuple[Rental | None, Rental | None]:
    """(the rider's rental made with this Idempotency-Key, the rider's open rental), in one
    statement: what a rent request checks first."""
    found = session.scalars(
        select(Rental).where(
            Rental.rider_id == rider_id,
            or_(Rental.idempotency_key == idempotency_key, Rental.status.in_(OPEN_STATUSES)),
        )
    ).all()
    by_key = next((r for r in found if r.idempotency_key == idempotency_key), None)
    open_ = next((r for r in found if r.status in OPEN_STATUSES), None)
    return by_key, open_


def insert_rental(session: Session, values: dict[str, Any]) -> int | None:
    """Insert a rental; its id, or None when a unique index refused it (the slot is being
    unlocked for someone else, or this rider already has an open rental or this key). ON
    CONFLICT DO NOTHING rather than a savepoint: two statements fewer per rent."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    rental_id = session.scalar(
        insert(Rental).values(**values).on_conflict_do_nothing().returning(Rental.id)
    )
    return None if rental_id is None else int(rental_id)


def rentable_slots(session: Session, kiosk_id: str) -> list[tuple[int, str]]:
    """(slot_no, tag) of the kiosk's slots holding a healthy umbrella that is in stock and is
    not being unlocked for another rider right now."""
    rows = session.execute(_rentable_slots_query(kiosk_id)).all()
    return [(r.slot_no, r.tag) for r in rows if r.tag is not None]


def _rentable_slots_query(kiosk_id: str) -> Select[int, str | None]:
    reserved = select(Rental.slot_no).where(
        Rental.kiosk_id == kiosk_id, Rental.status == RentalStatus.EJECTING
    )
    return (
        select(Slot.slot_no, Slot.tag)
        .join(Umbrella, Umbrella.tag == Slot.tag)
        .where(
            Slot.kiosk_id == kiosk_id,
            Slot.status == SlotStatus.UMBRELLA,
            Slot.fault_code.is_(None),
            Umbrella.state == UmbrellaState.IN_SLOT,
            Slot.slot_no.not_in(reserved),
        )
    )


def rentals_by_cmd(session: Session, cmd_ids: Collection[str]) -> dict[str, Rental]:
    if not cmd_ids:
        return {}
    found = session.scalars(
        select(Rental).where(Rental.cmd_id.in_(list(cmd_ids))).with_for_update()
    ).all()
    return {r.cmd_id: r for r in found if r.cmd_id is not None}


def returnable_by_tag(session: Session, tags: Collection[str]) -> dict[str, Rental]:
    """The newest rental per tag that a return can still end (active or forfeited)."""
    if not tags:
        return {}
    found = session.scalars(
        select(Rental)
        .where(
            Rental.umbrella_tag.in_(list(tags)),
            Rental.status.in_((RentalStatus.ACTIVE, RentalStatus.FORFEITED)),
            Rental.returned_at.is_(None),
        )
        .order_by(Rental.id)
        .with_for_update()
    ).all()
    return {r.umbrella_tag: r for r in found if r.umbrella_tag is not None}


def upsert_umbrellas(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Record where umbrellas are. Each row: tag, kiosk_id, slot_no, state, now, and
    `sticky`: when True an umbrella that is on rent or forfeited keeps that state (a snapshot
    only says where it is; ending the rental is the return event's job)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for sticky in (True, False):
        batch = [
            {
                "tag": r["tag"],
                "kiosk_id": r["kiosk_id"],
                "slot_no": r["slot_no"],
                "state": r["state"],
                "first_seen_at": r["now"],
                "updated_at": r["now"],
            }
            for r in rows
            if bool(r["sticky"]) is sticky
        ]
        if not batch:
            continue
        stmt = insert(Umbrella)
        excluded = stmt.excluded
        state: Any = excluded.state
        if sticky:
            state = case(
                (
                    # Not IN (...): an expanding parameter cannot be used with executemany.
                    or_(
                        Umbrella.state == UmbrellaState.ON_RENT,
                        Umbrella.state == UmbrellaState.FORFEITED,
                    ),
                    Umbrella.state,
                ),
                else_=excluded.state,
            )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["tag"],
                set_={
                    "kiosk_id": excluded.kiosk_id,
                    "slot_no": excluded.slot_no,
                    "state": state,
                    "updated_at": excluded.updated_at,
                },
            ),
            batch,
        )


def set_umbrella(
    session: Session,
    tag: str,
    state: UmbrellaState,
    now: datetime,
    *,
    kiosk_id: str | None = None,
    slot_no: int | None = None,
) -> None:
    session.execute(
        update(Umbrella)
        .where(Umbrella.tag == tag)
        .values(state=state, kiosk_id=kiosk_id, slot_no=slot_no, updated_at=now)
    )


def umbrella(session: Session, tag: str) -> Umbrella | None:
    return session.get(Umbrella, tag)


def add_audit(session: Session, entry: AuditLog) -> None:
    session.add(entry)
    session.flush()


def audit_for(session: Session, subject: str) -> Sequence[AuditLog]:
    return session.scalars(
        select(AuditLog).where(AuditLog.subject == subject).order_by(AuditLog.id)
    ).all()


def stuck(
    session: Session, *, ejecting_before: datetime, overdue_before: datetime, limit: int
) -> dict[str, Sequence[Rental]]:
    """Rentals an operator should look at (see service.stuck_rentals)."""
    ejecting = session.scalars(
        select(Rental)
        .where(Rental.status == RentalStatus.EJECTING, Rental.updated_at < ejecting_before)
        .order_by(Rental.id)
        .limit(limit)
    ).all()
    overdue = session.scalars(
        select(Rental)
        .where(Rental.status == RentalStatus.ACTIVE, Rental.deadline_at < overdue_before)
        .order_by(Rental.deadline_at)
        .limit(limit)
    ).all()
    # The umbrella sits in a slot but its rental never saw the return (a lost event).
    in_slot_on_rent = session.scalars(
        select(Rental)
        .join(Umbrella, Umbrella.tag == Rental.umbrella_tag)
        .join(
            Slot,
            and_(Slot.kiosk_id == Umbrella.kiosk_id, Slot.slot_no == Umbrella.slot_no),
        )
        .where(
            Rental.status == RentalStatus.ACTIVE,
            Slot.tag == Rental.umbrella_tag,
            Slot.status == SlotStatus.UMBRELLA,
        )
        .order_by(Rental.id)
        .limit(limit)
    ).all()
    return {"ejecting": ejecting, "overdue": overdue, "in_slot_but_on_rent": in_slot_on_rent}


def count_by_status(session: Session) -> dict[str, int]:
    return {
        str(status): int(n)
        for status, n in session.execute(
            select(Rental.status, func.count()).group_by(Rental.status)
        ).all()
    }


@dataclass(frozen=True, slots=True)
class DueRental:
    id: int
    rider_id: int
    deposit_fen: int
    deposit_payment_id: int
    umbrella_tag: str | None
    #: Set on every active rental; typed optional because the column is.
    deadline_at: datetime | None


#: The predicate of the partial index `ix_rentals_active_deadline`, as a literal: PostgreSQL
#: uses a partial index only when it can prove the query implies the index's predicate,
#: which a bound parameter (`status = $1`) does not allow once the plan is generic.
_ACTIVE = text("rentals.status = 'active'")


def claim_overdue(session: Session, now: datetime, limit: int) -> list[DueRental]:
    """Active rentals past their deadline, row-locked; rows another sweep holds are skipped."""
    rows = session.execute(
        select(
            Rental.id,
            Rental.rider_id,
            Rental.deposit_fen,
            Rental.deposit_payment_id,
            Rental.umbrella_tag,
            Rental.deadline_at,
        )
        .where(_ACTIVE, Rental.deadline_at <= now)
        .order_by(Rental.deadline_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [DueRental(*row) for row in rows]


def mark_forfeited(session: Session, due: Sequence[DueRental], now: datetime) -> None:
    """Rentals `forfeited`, their deposit payments `forfeited`, their umbrellas the riders':
    three set-wise UPDATEs (`= ANY(:ids)` on PostgreSQL). Loaded objects are not refreshed."""
    if not due:
        return
    unsynced = {"synchronize_session": False}
    session.execute(
        update(Rental)
        .where(any_of(session, Rental.id, {r.id for r in due}))
        .values(status=RentalStatus.FORFEITED, forfeited_at=now, updated_at=now)
        .execution_options(**unsynced)
    )
    session.execute(
        update(DepositPayment)
        .where(any_of(session, DepositPayment.id, {r.deposit_payment_id for r in due}))
        .values(status=DepositStatus.FORFEITED)
        .execution_options(**unsynced)
    )
    tags = {r.umbrella_tag for r in due if r.umbrella_tag}
    if tags:
        session.execute(
            update(Umbrella)
            .where(any_of(session, Umbrella.tag, tags))
            .values(state=UmbrellaState.FORFEITED, kiosk_id=None, slot_no=None, updated_at=now)
            .execution_options(**unsynced)
        )


@dataclass(frozen=True, slots=True)
class ReminderDue:
    id: int
    rider_id: int
    deadline_at: datetime | None
    deposit_fen: int


def claim_reminders(
    session: Session, *, stage: int, deadline_by: datetime, limit: int
) -> list[ReminderDue]:
    """Active rentals whose deadline is at or before `deadline_by` and that have had fewer
    than `stage` reminders; marks them as having had `stage`."""
    rows = session.execute(
        select(Rental.id, Rental.rider_id, Rental.deadline_at, Rental.deposit_fen)
        .where(
            Rental.status == RentalStatus.ACTIVE,
            Rental.deadline_at <= deadline_by,
            Rental.reminders_sent < stage,
        )
        .order_by(Rental.deadline_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if rows:
        session.execute(update(Rental), [{"id": r.id, "reminders_sent": stage} for r in rows])
    return [ReminderDue(*row) for row in rows]
