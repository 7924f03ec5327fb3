"""The bridge's dispatch path against SQLite and PostgreSQL, messages injected without a broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from firmware_protocol import encode, topics
from firmware_protocol.messages import (
    Boot,
    CmdResult,
    CmdStatus,
    Fault,
    Heartbeat,
    MsgType,
    Offline,
    Online,
    SlotEvent,
    SlotEventKind,
    SlotState,
)
from server.bridge.connection import Incoming
from server.bridge.dispatch import Dispatcher, inject, result_key
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import MemorySharedState
from server.kiosk_state import jobs
from server.kiosk_state.service import ApplyOutcome, KioskStateService, Received
from server.models import (
    CommandRecord,
    KioskFault,
    KioskState,
    RejectedUplink,
    Slot,
    SlotDisagreement,
    SlotEventRecord,
    SlotStatus,
    UplinkReceipt,
)
from tests.integration.rows import add_kiosks

K = "K0001"
TAG_A = bytes.fromhex("a1a1a1a1")
TAG_B = bytes.fromhex("b2b2b2b2")


def hb(seq: int, slots: Sequence[bytes | None], kiosk: str = K, **kw: Any) -> Heartbeat:
    return Heartbeat(kiosk, seq, clock.now_ms(), -70, tuple(SlotState(tag=t) for t in slots), **kw)


def ev(seq: int, slot: int, kind: SlotEventKind, tag: bytes | None, kiosk: str = K) -> SlotEvent:
    return SlotEvent(kiosk, seq, clock.now_ms(), slot, kind, tag)


def slot_row(db: Database, slot_no: int, kiosk: str = K) -> Slot:
    with db.transaction() as s:
        row = s.get(Slot, (kiosk, slot_no))
        assert row is not None
        return row


def state_row(db: Database, kiosk: str = K) -> KioskState:
    with db.transaction() as s:
        row = s.get(KioskState, kiosk)
        assert row is not None
        return row


def count(db: Database, model: type[Any]) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


class RecordingAcker:
    def __init__(self) -> None:
        self.acked: list[Incoming] = []

    def ack(self, item: Incoming) -> None:
        self.acked.append(item)


@pytest.fixture
def kiosk(db: Database) -> str:
    add_kiosks(db, K)
    return K


@pytest.fixture
def dispatcher(db: Database) -> Dispatcher:
    return Dispatcher(db, MemorySharedState(), acker=RecordingAcker())


# ---------------------------------------------------------------- slots


def test_first_heartbeat_creates_all_slots_of_the_kiosk(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    report = inject(dispatcher, hb(1, [TAG_A, None, TAG_B]))

    assert report.applied == 1
    with db.transaction() as s:
        slots = s.scalars(select(Slot).where(Slot.kiosk_id == kiosk).order_by(Slot.slot_no)).all()
        assert len(slots) == 22  # the registry's slot count, not just the snapshot's
        assert [(x.status, x.tag) for x in slots[:3]] == [
            (SlotStatus.UMBRELLA, "A1A1A1A1"),
            (SlotStatus.EMPTY, None),
            (SlotStatus.UMBRELLA, "B2B2B2B2"),
        ]
        assert all(x.applied_seq == 0 for x in slots[3:])
    state = state_row(db)
    assert state.online
    assert state.signal_dbm == -70
    assert state.max_seq == 1


def test_slot_events_update_the_slot_and_are_kept_as_history(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    inject(dispatcher, hb(1, [None, None]))
    inject(dispatcher, ev(2, 1, SlotEventKind.INSERTED, TAG_A))
    inject(
        dispatcher, ev(3, 2, SlotEventKind.INSERTED, TAG_B), ev(4, 2, SlotEventKind.REMOVED, None)
    )

    one, two = slot_row(db, 1), slot_row(db, 2)
    assert (one.status, one.tag, one.applied_seq) == (SlotStatus.UMBRELLA, "A1A1A1A1", 2)
    assert (two.status, two.tag, two.applied_seq) == (SlotStatus.EMPTY, None, 4)
    with db.transaction() as s:
        history = s.scalars(select(SlotEventRecord).order_by(SlotEventRecord.seq)).all()
        assert [(e.seq, e.slot_no, e.kind, e.tag) for e in history] == [
            (2, 1, "in", "A1A1A1A1"),
            (3, 2, "in", "B2B2B2B2"),
            (4, 2, "out", None),
        ]


def test_a_duplicate_message_changes_nothing(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    inserted = ev(2, 1, SlotEventKind.INSERTED, TAG_A)
    inject(dispatcher, inserted)
    inject(dispatcher, ev(3, 1, SlotEventKind.REMOVED, None))

    again = inject(dispatcher, inserted)  # caught by the shared-state pre-filter
    # A second bridge with an empty pre-filter: the receipts' primary key catches it.
    other_bridge = Dispatcher(db, MemorySharedState())
    again_elsewhere = inject(other_bridge, inserted, inserted)

    assert (again.applied, again.duplicates) == (0, 1)
    assert (again_elsewhere.applied, again_elsewhere.duplicates) == (0, 2)
    assert slot_row(db, 1).status is SlotStatus.EMPTY
    assert count(db, SlotEventRecord) == 2
    assert count(db, UplinkReceipt) == 2


def test_reordered_older_event_is_kept_in_history_but_leaves_the_newest_state(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    inject(dispatcher, ev(5, 1, SlotEventKind.REMOVED, None))
    inject(dispatcher, ev(4, 1, SlotEventKind.INSERTED, TAG_A))  # overtaken on the way

    row = slot_row(db, 1)
    assert (row.status, row.tag, row.applied_seq) == (SlotStatus.EMPTY, None, 5)
    assert count(db, SlotEventRecord) == 2


def test_events_reordered_within_one_batch_are_applied_in_seq_order(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    inject(dispatcher, hb(1, [None]))
    inject(dispatcher, hb(3, [TAG_A]), ev(2, 1, SlotEventKind.INSERTED, TAG_A))

    assert slot_row(db, 1).tag == "A1A1A1A1"
    assert count(db, SlotDisagreement) == 0


def test_heartbeat_contradicting_the_events_records_a_disagreement_and_wins(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    inject(dispatcher, ev(1, 1, SlotEventKind.INSERTED, TAG_A))
    inject(dispatcher, hb(2, [TAG_B]))  # the event that swapped the umbrellas was lost

    row = slot_row(db, 1)
    assert (row.status, row.tag, row.applied_seq) == (SlotStatus.UMBRELLA, "B2B2B2B2", 2)
    with db.transaction() as s:
        (d,) = s.scalars(select(SlotDisagreement)).all()
        assert (d.slot_no, d.heartbeat_seq) == (1, 2)
        assert (d.believed_status, d.believed_tag) == ("umbrella", "A1A1A1A1")
        assert (d.reported_status, d.reported_tag) == ("umbrella", "B2B2B2B2")


def test_older_heartbeat_changes_nothing(db: Database, dispatcher: Dispatcher, kiosk: str) -> None:
    inject(dispatcher, ev(5, 1, SlotEventKind.INSERTED, TAG_A))
    inject(dispatcher, hb(4, [None]))

    assert slot_row(db, 1).tag == "A1A1A1A1"
    assert count(db, SlotDisagreement) == 0


def test_slot_fault_marks_the_slot_faulty_until_cleared(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    now = clock.now_ms()
    inject(dispatcher, ev(1, 3, SlotEventKind.INSERTED, TAG_A))
    inject(dispatcher, Fault(kiosk, 2, now, code=4, active=True, slot=3, detail="lock jammed"))
    faulty = slot_row(db, 3)
    inject(dispatcher, Fault(kiosk, 3, now, code=4, active=False, slot=3))

    assert (faulty.status, faulty.fault_code, faulty.tag) == (SlotStatus.FAULT, 4, "A1A1A1A1")
    cleared = slot_row(db, 3)
    assert (cleared.status, cleared.fault_code) == (SlotStatus.UMBRELLA, None)
    assert count(db, KioskFault) == 2


# ---------------------------------------------------------------- presence


def test_boot_records_firmware_and_clock_skew(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    now = clock.now_ms()
    inject(dispatcher, Boot(kiosk, 1, now - 1500, "1.4.2", 22, conn=1), received_ms=now)

    state = state_row(db)
    assert (state.firmware, state.clock_skew_ms, state.conn, state.online) == (
        "1.4.2",
        1500,
        1,
        True,
    )


def test_stale_offline_after_a_newer_online_is_ignored(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    now = clock.now_ms()
    inject(dispatcher, Online(kiosk, 0, now, conn=8))
    report = inject(dispatcher, Offline(kiosk, 0, now - 60_000, conn=7))

    state = state_row(db)
    assert (state.online, state.conn) == (True, 8)
    assert report.went_offline == []


def test_last_will_of_the_current_connection_marks_the_kiosk_offline(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    now = clock.now_ms()
    first = inject(dispatcher, Online(kiosk, 0, now, conn=8))
    will = inject(dispatcher, Offline(kiosk, 0, now, conn=8))

    assert first.went_online == [kiosk]
    assert will.went_offline == [kiosk]
    assert not state_row(db).online
    presence = dispatcher.shared_state.get_presence(kiosk)
    assert presence is not None
    assert not presence.online
    assert presence.conn == 8


def test_presence_timeout_marks_a_silent_kiosk_offline(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    add_kiosks(db, "K0002")
    inject(dispatcher, hb(1, [None]), hb(1, [None], kiosk="K0002"))
    later = clock.now() + timedelta(seconds=200)
    inject(dispatcher, hb(2, [None], kiosk="K0002"), received_ms=int(later.timestamp() * 1000))

    with db.transaction() as s:
        n = jobs.mark_silent_kiosks_offline(
            s, later, timeout_s=180, shared_state=dispatcher.shared_state
        )

    assert n == 1
    assert not state_row(db).online
    assert state_row(db, "K0002").online
    presence = dispatcher.shared_state.get_presence(kiosk)
    assert presence is not None
    assert not presence.online
    with db.transaction() as s:  # a second run finds nothing left to do
        assert jobs.mark_silent_kiosks_offline(s, later, timeout_s=180) == 0


# ---------------------------------------------------------------- rejections


def test_unknown_kiosk_is_counted_and_dropped(db: Database, dispatcher: Dispatcher) -> None:
    report = inject(dispatcher, hb(1, [TAG_A], kiosk="NOBODY"))

    assert report.rejected == {"unknown_kiosk": 1}
    assert report.applied == 0
    assert dispatcher.stats()["rejected.unknown_kiosk"] == 1
    assert count(db, UplinkReceipt) == 0
    assert count(db, Slot) == 0
    with db.transaction() as s:
        (row,) = s.scalars(select(RejectedUplink)).all()
        assert (row.reason, row.topic) == ("unknown_kiosk", "umb/1/NOBODY/up/hb")


def test_malformed_payload_is_counted_with_its_reason_and_acked_without_exception(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    garbage = (topics.uplink(kiosk, MsgType.HEARTBEAT), b"\xff\x00 not cbor")
    wrong_kiosk = (
        topics.uplink(kiosk, MsgType.SLOT_EVENT),
        encode(ev(1, 1, SlotEventKind.REMOVED, None, kiosk="K9")),
    )

    report = inject(dispatcher, garbage, wrong_kiosk, ev(2, 1, SlotEventKind.REMOVED, None))

    assert report.rejected == {"not_cbor": 1, "wrong_kiosk": 1}
    assert report.applied == 1  # the good message of the batch still applies
    assert dispatcher.stats()["rejected.not_cbor"] == 1
    assert dispatcher.shared_state.counters("bridge.rejected.") == {
        "bridge.rejected.not_cbor": 1,
        "bridge.rejected.wrong_kiosk": 1,
    }
    assert isinstance(dispatcher.acker, RecordingAcker)
    assert len(dispatcher.acker.acked) == 3
    with db.transaction() as s:
        rows = s.scalars(select(RejectedUplink).order_by(RejectedUplink.reason)).all()
        assert [(r.reason, r.payload_head) for r in rows] == [
            ("not_cbor", garbage[1]),
            ("wrong_kiosk", wrong_kiosk[1]),
        ]


class ExplodingService(KioskStateService):
    """Fails any batch that contains the slot event with seq 13."""

    def apply_batch(self, session: Session, batch: Sequence[Received]) -> ApplyOutcome:
        if any(r.msg.seq == 13 for r in batch):
            raise RuntimeError("boom")
        return super().apply_batch(session, batch)


def test_message_that_fails_alone_is_rejected_and_the_rest_of_the_batch_applies(
    db: Database, kiosk: str
) -> None:
    acker = RecordingAcker()
    dispatcher = Dispatcher(db, MemorySharedState(), acker=acker, service=ExplodingService())

    report = inject(
        dispatcher,
        ev(12, 1, SlotEventKind.INSERTED, TAG_A),
        ev(13, 2, SlotEventKind.INSERTED, TAG_B),
        ev(14, 3, SlotEventKind.INSERTED, TAG_B),
    )

    assert report.applied == 2
    assert report.rejected == {"apply_failed": 1}
    assert len(acker.acked) == 3  # no poison loop: the failed one is acknowledged too
    assert count(db, SlotEventRecord) == 2
    with db.transaction() as s:
        (row,) = s.scalars(select(RejectedUplink)).all()
        assert row.reason == "apply_failed"
        assert "boom" in row.detail


# ---------------------------------------------------------------- commands and batching


def test_command_result_updates_the_record_and_is_handed_to_the_shared_state(
    db: Database, dispatcher: Dispatcher, kiosk: str
) -> None:
    now = clock.now()
    with db.transaction() as s:
        s.add(
            CommandRecord(
                id="c1",
                kiosk_id=kiosk,
                op="unlock",
                slot_no=4,
                created_at=now,
                expires_at=now + timedelta(seconds=30),
                status="sent",
            )
        )
    result = CmdResult(kiosk, 9, clock.now_ms(), "c1", CmdStatus.TAKEN, slot=4, tag=TAG_A)

    inject(dispatcher, result)
    inject(dispatcher, result)  # a duplicate is pushed again (see dispatch: after commit)

    with db.transaction() as s:
        record = s.get(CommandRecord, "c1")
        assert record is not None
        assert record.status == "taken"
        assert record.result_at is not None
    assert dispatcher.shared_state.wait_result(result_key("c1"), 0) == encode(result)
    assert dispatcher.shared_state.wait_result(result_key("c1"), 0) == encode(result)


def test_a_large_batch_is_applied_with_a_bounded_number_of_statements(
    db: Database, dispatcher: Dispatcher
) -> None:
    kiosks = [f"B{i:04d}" for i in range(60)]
    add_kiosks(db, *kiosks)
    statements: list[str] = []

    def count_statement(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count_statement)
    try:
        report = inject(dispatcher, *(hb(1, [TAG_A] * 22, kiosk=k) for k in kiosks))
    finally:
        event.remove(db.engine, "before_cursor_execute", count_statement)

    assert report.applied == 60
    assert count(db, Slot) == 60 * 22
    assert len(statements) <= 20, statements


def test_worker_thread_acknowledges_only_after_the_batch_is_committed(
    db: Database, kiosk: str
) -> None:
    committed_before_ack: list[bool] = []

    class CheckingAcker:
        def ack(self, item: Incoming) -> None:
            committed_before_ack.append(count(db, UplinkReceipt) > 0)

    dispatcher = Dispatcher(db, MemorySharedState(), acker=CheckingAcker())
    message = ev(1, 1, SlotEventKind.INSERTED, TAG_A)
    dispatcher.start()
    try:
        dispatcher.submit(
            Incoming(
                topics.uplink(kiosk, MsgType.SLOT_EVENT), encode(message), 7, 1, clock.now_ms()
            )
        )
        deadline = time.monotonic() + 10
        while not committed_before_ack and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        dispatcher.stop()

    assert committed_before_ack == [True]
    assert dispatcher.stats()["applied"] == 1


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.name == "bridge-dispatch"]
    assert not leaked
