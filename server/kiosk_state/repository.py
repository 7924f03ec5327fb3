"""Every query of kiosk live state. Batch-shaped: one statement per kind of row, not per message.

A batch locks the kiosk_states rows of its kiosks, in primary-key order, so two bridge
processes applying overlapping batches on PostgreSQL wait for each other instead of
deadlocking. Slot rows are written only under that kiosk lock, so they are read without
a lock of their own (anything else that writes slots must lock the kiosk's state first).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Insert,
    Table,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.core.db import any_of
from server.models import (
    CommandRecord,
    Kiosk,
    KioskState,
    RejectedUplink,
    Slot,
    SlotStatus,
    UplinkReceipt,
)


def _insert_ignoring_conflicts(session: Session, table: Table) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING in the dialect at hand."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"no conflict-ignoring insert for {dialect}")


_PG_INSERT_RECEIPTS = text(
    "INSERT INTO uplink_receipts (kiosk_id, seq, msg_type, kiosk_time, received_at) "
    "SELECT * FROM unnest(CAST(:kiosk_id AS varchar[]), CAST(:seq AS bigint[]), "
    "CAST(:msg_type AS integer[]), CAST(:kiosk_time AS timestamptz[]), "
    "CAST(:received_at AS timestamptz[])) "
    "ON CONFLICT DO NOTHING RETURNING kiosk_id, seq"
)


def kiosk_slot_counts(session: Session, kiosk_ids: Collection[str]) -> dict[str, int]:
    """Registered kiosks among `kiosk_ids`, with their slot count."""
    if not kiosk_ids:
        return {}
    rows = session.execute(
        select(Kiosk.id, Kiosk.slot_count).where(any_of(session, Kiosk.id, kiosk_ids))
    ).all()
    return {kiosk_id: slot_count for kiosk_id, slot_count in rows}


def lock_states(session: Session, kiosk_ids: Collection[str]) -> dict[str, KioskState]:
    """The live-state rows of these (registered) kiosks, created if missing, locked."""
    if not kiosk_ids:
        return {}
    ids = sorted(kiosk_ids)

    def load() -> dict[str, KioskState]:
        rows = session.scalars(
            select(KioskState)
            .where(any_of(session, KioskState.kiosk_id, ids))
            .order_by(KioskState.kiosk_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        return {s.kiosk_id: s for s in rows}

    states = load()
    missing = [k for k in ids if k not in states]
    if missing:  # registration creates them; this covers kiosks registered before that
        session.execute(
            _insert_ignoring_conflicts(session, KioskState.__table__),  # type: ignore[arg-type]
            [
                {"kiosk_id": k, "online": False, "conn": 0, "max_seq": 0, "snapshot_seq": 0}
                for k in missing
            ],
        )
        states = load()
    return states


def insert_receipts(session: Session, rows: Sequence[Mapping[str, Any]]) -> set[tuple[str, int]]:
    """Insert (kiosk_id, seq) receipts; return the keys that were new.

    The primary key is the authoritative duplicate filter: of two bridges racing on one
    redelivered message, exactly one gets the key back.
    """
    new: set[tuple[str, int]] = set()
    if not rows:
        return new
    if session.get_bind().dialect.name == "postgresql":
        # One statement of five array parameters, whatever the batch size.
        columns = ("kiosk_id", "seq", "msg_type", "kiosk_time", "received_at")
        result = session.execute(_PG_INSERT_RECEIPTS, {c: [r[c] for r in rows] for c in columns})
        new.update((k, s) for k, s in result.all())
        return new
    table = UplinkReceipt.__table__
    stmt = _insert_ignoring_conflicts(session, table)  # type: ignore[arg-type]
    # executemany + RETURNING: SQLAlchemy batches it into multi-row INSERTs
    # ("insertmanyvalues") from one cached compiled statement.
    result = session.execute(stmt.returning(table.c.kiosk_id, table.c.seq), list(rows))
    new.update((k, s) for k, s in result.all())
    return new


SlotRow = tuple[SlotStatus, str | None, int | None, int]
"""(status, tag, fault_code, applied_seq) of one slot."""


def load_slots(session: Session, wanted: Mapping[str, int]) -> dict[tuple[str, int], SlotRow]:
    """Slots 1..wanted[kiosk] of each kiosk (created lazily: empty, nothing known), as plain
    rows: a batch of heartbeats reads thousands of slots and writes back only the changed."""
    if not wanted:
        return {}
    ids = sorted(wanted)

    def load() -> dict[tuple[str, int], SlotRow]:
        found = session.execute(
            select(
                Slot.kiosk_id,
                Slot.slot_no,
                Slot.status,
                Slot.tag,
                Slot.fault_code,
                Slot.applied_seq,
            ).where(any_of(session, Slot.kiosk_id, ids))
        ).all()
        return {(k, n): (st, tag, fault, seq) for k, n, st, tag, fault, seq in found}

    slots = load()
    missing = [
        {"kiosk_id": k, "slot_no": n, "status": SlotStatus.EMPTY, "applied_seq": 0}
        for k in ids
        for n in range(1, wanted[k] + 1)
        if (k, n) not in slots
    ]
    if missing:
        stmt = _insert_ignoring_conflicts(session, Slot.__table__)  # type: ignore[arg-type]
        session.execute(stmt, missing)
        slots = load()
    return slots


def update_slots(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write changed slots by primary key (one executemany)."""
    if rows:
        session.execute(update(Slot), list(rows))


def insert_rows(session: Session, model: type[Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """Append-only history rows (events, faults, disagreements) in one executemany."""
    if rows:
        session.execute(insert(model), list(rows))


def commands_by_id(session: Session, cmd_ids: Collection[str]) -> dict[str, CommandRecord]:
    if not cmd_ids:
        return {}
    rows = session.scalars(
        select(CommandRecord).where(any_of(session, CommandRecord.id, cmd_ids)).with_for_update()
    ).all()
    return {c.id: c for c in rows}


def add_all(session: Session, rows: Iterable[object]) -> None:
    session.add_all(list(rows))


def add_rejected(
    session: Session, *, topic: str, reason: str, detail: str, payload: bytes, received_at: datetime
) -> None:
    session.add(
        RejectedUplink(
            topic=topic[:255],
            reason=reason[:64],
            detail=detail[:255],
            payload_head=payload[:256],
            received_at=received_at,
        )
    )


def lock_silent_online_states(session: Session, cutoff: datetime) -> list[KioskState]:
    """Online kiosks last heard from before `cutoff` (or never)."""
    return list(
        session.scalars(
            select(KioskState)
            .where(
                KioskState.online.is_(True),
                (KioskState.last_seen_at < cutoff) | KioskState.last_seen_at.is_(None),
            )
            .order_by(KioskState.kiosk_id)
            .with_for_update(skip_locked=True)
        ).all()
    )


# ---------------------------------------------------------------- commands (sender side)


def kiosk_clock_skew(session: Session, kiosk_id: str) -> tuple[bool, int | None]:
    """(kiosk is registered, its last known clock skew in ms)."""
    row = session.execute(
        select(Kiosk.id, KioskState.clock_skew_ms)
        .outerjoin(KioskState, KioskState.kiosk_id == Kiosk.id)
        .where(Kiosk.id == kiosk_id)
    ).first()
    if row is None:
        return False, None
    return True, row[1]


def add_command(session: Session, record: CommandRecord) -> None:
    session.add(record)
    session.flush()


def finish_command_if_pending(
    session: Session, cmd_id: str, status: str, at: datetime, *, pending: str = "sent"
) -> bool:
    """Conditional update: a result the bridge already stored is never overwritten."""
    result = session.execute(
        update(CommandRecord)
        .where(CommandRecord.id == cmd_id, CommandRecord.status == pending)
        .values(status=status, result_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def delete_receipts_before(session: Session, cutoff: datetime) -> int:
    result = session.execute(
        delete(UplinkReceipt)
        .where(UplinkReceipt.received_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def rejected_counts_since(session: Session, since: datetime) -> dict[str, int]:
    rows = session.execute(
        select(RejectedUplink.reason, func.count())
        .where(RejectedUplink.received_at >= since)
        .group_by(RejectedUplink.reason)
    ).all()
    return {reason: int(n) for reason, n in rows}


def recent_rejections(session: Session, limit: int) -> Sequence[RejectedUplink]:
    return session.scalars(
        select(RejectedUplink).order_by(RejectedUplink.id.desc()).limit(limit)
    ).all()
