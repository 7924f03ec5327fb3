"""Apply decoded kiosk uplinks to the live state. Flushes, never commits: the caller (one
bridge batch, one test) owns the transaction (CONVENTIONS: transactions belong to the edge).

A batch is applied with a handful of statements whatever its size: kiosks, states, slots,
receipts and commands are each loaded or written once per batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from firmware_protocol import encode, msg_type, topic_for
from firmware_protocol.messages import (
    Boot,
    CmdResult,
    Fault,
    Heartbeat,
    Offline,
    Online,
    Play,
    SlotEvent,
    SlotState,
    UplinkMessage,
)
from server.core.clock import from_ms, to_ms
from server.core.shared_state import Presence
from server.kiosk_state import repository as repo
from server.kiosk_state import rules
from server.models import (
    KioskFault,
    KioskState,
    SlotDisagreement,
    SlotEventRecord,
)

#: kiosk time is untrusted: anything past this (ms) is clamped so a datetime can hold it.
_MAX_KIOSK_MS = 253_402_214_400_000  # 9999-12-31T00:00:00Z


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded uplink and when this server received it (ms, from the one clock)."""

    msg: UplinkMessage
    received_ms: int


@dataclass(slots=True)
class ApplyOutcome:
    #: Messages that changed (or were recorded in) the state this time.
    applied: list[UplinkMessage] = field(default_factory=list)
    #: Sequenced messages whose (kiosk, seq) receipt already existed, or repeated in the batch.
    duplicates: list[UplinkMessage] = field(default_factory=list)
    #: Messages of kiosks that are not in the registry (recorded as rejected).
    unknown: list[UplinkMessage] = field(default_factory=list)
    #: Newly applied command results, to hand to the waiting sender after commit.
    cmd_results: list[CmdResult] = field(default_factory=list)
    #: Final presence of every kiosk the batch touched, for the presence cache.
    presence: list[Presence] = field(default_factory=list)
    went_online: list[str] = field(default_factory=list)
    went_offline: list[str] = field(default_factory=list)


PlayHook = Callable[[Session, Sequence[tuple[Play, datetime]]], None]
"""Called in the batch's session with new proof-of-play records (ads build on it)."""

ResultHook = Callable[[Session, Sequence[tuple[CmdResult, datetime]]], None]
"""Called in the batch's session with the new command results that answer no recorded
command, and their receive time, in seq order: the answers to playlists (firmware_protocol
SPEC §4.3; server/playlists). A result of the command channel never reaches it."""


@dataclass(frozen=True, slots=True)
class SlotActivity:
    """What a batch did to slots, for the rentals domain: new slot events in seq order as
    (event, tag hex, kiosk time, receive time), and the slot rows whose state changed as
    (kiosk, slot, tag of the umbrella in it or None)."""

    events: list[tuple[SlotEvent, str | None, datetime, datetime]]
    changed: list[tuple[str, int, str | None]]


SlotHook = Callable[[Session, SlotActivity], None]
"""Called in the batch's session when slot events arrived or slot states changed."""


def kiosk_time(ts_ms: int) -> datetime:
    return from_ms(min(max(ts_ms, 0), _MAX_KIOSK_MS))


def _presence_view(s: KioskState) -> rules.PresenceView:
    return rules.PresenceView(
        online=s.online,
        conn=s.conn,
        changed_ms=None if s.online_changed_at is None else to_ms(s.online_changed_at),
        skew_ms=s.clock_skew_ms,
        skew_at_ms=None if s.clock_skew_at is None else to_ms(s.clock_skew_at),
        max_seq=s.max_seq,
        last_seen_ms=None if s.last_seen_at is None else to_ms(s.last_seen_at),
    )


def _store_presence(s: KioskState, p: rules.PresenceView) -> None:
    s.online = p.online
    s.conn = p.conn
    if p.changed_ms is not None and (
        s.online_changed_at is None or to_ms(s.online_changed_at) != p.changed_ms
    ):
        s.online_changed_at = from_ms(p.changed_ms)
    s.clock_skew_ms = p.skew_ms
    if p.skew_at_ms is not None and (
        s.clock_skew_at is None or to_ms(s.clock_skew_at) != p.skew_at_ms
    ):
        s.clock_skew_at = from_ms(p.skew_at_ms)
    s.max_seq = p.max_seq
    if p.last_seen_ms is not None and (
        s.last_seen_at is None or to_ms(s.last_seen_at) != p.last_seen_ms
    ):
        s.last_seen_at = from_ms(p.last_seen_ms)


class _Slots:
    """The batch's working copy of slot rows: reads as SlotViews (confirmed up to the
    kiosk's snapshot_seq), collects the changed rows for one executemany at the end."""

    def __init__(self, rows: dict[tuple[str, int], repo.SlotRow], snapshot_seq: dict[str, int]):
        self.rows = rows
        self.snapshot_seq = snapshot_seq
        self.changed: dict[tuple[str, int], dict[str, object]] = {}

    def view(self, kiosk_id: str, slot_no: int) -> rules.SlotView:
        status, tag, fault, seq = self.rows[(kiosk_id, slot_no)]
        return rules.SlotView(status, tag, fault, max(seq, self.snapshot_seq[kiosk_id]))

    def all_agree(self, kiosk_id: str, snapshot: Sequence[SlotState]) -> bool:
        """Every slot of the snapshot shows what we believe (the usual heartbeat): then it
        changes nothing but the kiosk's snapshot_seq, and the per-slot rules can be skipped."""
        rows = self.rows
        for slot_no, reported in enumerate(snapshot, start=1):
            _, tag, fault, _ = rows[(kiosk_id, slot_no)]
            if fault != reported.fault or tag != rules.tag_hex(reported.tag):
                return False
        return True

    def store(
        self, kiosk_id: str, slot_no: int, v: rules.SlotView, observed: datetime, now: datetime
    ) -> None:
        self.rows[(kiosk_id, slot_no)] = (v.status, v.tag, v.fault_code, v.applied_seq)
        self.changed[(kiosk_id, slot_no)] = {
            "kiosk_id": kiosk_id,
            "slot_no": slot_no,
            "status": v.status,
            "tag": v.tag,
            "fault_code": v.fault_code,
            "applied_seq": v.applied_seq,
            "observed_at": observed,
            "updated_at": now,
        }


def _in_seq_order(batch: Sequence[Received]) -> list[Received]:
    """Sequenced messages of one kiosk sorted by seq, in the positions they arrived in.

    Presence messages keep their arrival position, so interleaving with them is preserved.
    Applying a batch in seq order avoids recording a false disagreement when a heartbeat
    overtook the slot event before it.
    """
    out = list(batch)
    positions: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(out):
        if not isinstance(r.msg, Online | Offline):
            positions[r.msg.kiosk_id].append(i)
    for idx in positions.values():
        ordered = sorted((out[i] for i in idx), key=lambda r: r.msg.seq)
        for i, r in zip(idx, ordered, strict=True):
            out[i] = r
    return out


def _slots_wanted(msgs: Sequence[Received], slot_counts: dict[str, int]) -> dict[str, int]:
    wanted: dict[str, int] = {}
    for r in msgs:
        m = r.msg
        if isinstance(m, Heartbeat):
            n = len(m.slots)
        elif isinstance(m, SlotEvent) or (isinstance(m, Fault) and m.slot is not None):
            n = m.slot or 0
        else:
            continue
        k = m.kiosk_id
        wanted[k] = max(wanted.get(k, slot_counts[k]), n)
    return wanted


class KioskStateService:
    def __init__(
        self,
        *,
        live_tolerance_ms: int = rules.DEFAULT_LIVE_TOLERANCE_MS,
        on_play: PlayHook | None = None,
        on_slots: SlotHook | None = None,
        on_results: ResultHook | None = None,
    ) -> None:
        self.live_tolerance_ms = live_tolerance_ms
        self.on_play = on_play
        self.on_slots = on_slots
        self.on_results = on_results
        #: Registered kiosks' slot counts, as read: a kiosk is never deleted and its slot
        #: count never changes (server/kiosks), so a kiosk once seen costs no query again.
        #: Unknown ids are always looked up, so a kiosk registered a moment ago is accepted.
        self._slot_counts: dict[str, int] = {}

    def record_rejected(
        self,
        session: Session,
        *,
        topic: str,
        reason: str,
        detail: str,
        payload: bytes,
        received_ms: int,
    ) -> None:
        repo.add_rejected(
            session,
            topic=topic,
            reason=reason,
            detail=detail,
            payload=payload,
            received_at=from_ms(received_ms),
        )

    def _registered(self, session: Session, kiosk_ids: set[str]) -> dict[str, int]:
        """The registered kiosks among `kiosk_ids`, with their slot count."""
        unseen = kiosk_ids - self._slot_counts.keys()
        if unseen:
            self._slot_counts.update(repo.kiosk_slot_counts(session, unseen))
        return {k: self._slot_counts[k] for k in kiosk_ids if k in self._slot_counts}

    def apply_batch(self, session: Session, batch: Sequence[Received]) -> ApplyOutcome:
        out = ApplyOutcome()
        if not batch:
            return out

        # 1. Registered kiosks only (SPEC §1: each kiosk has its own credentials).
        slot_counts = self._registered(session, {r.msg.kiosk_id for r in batch})
        known: list[Received] = []
        for r in batch:
            if r.msg.kiosk_id in slot_counts:
                known.append(r)
                continue
            out.unknown.append(r.msg)
            self.record_rejected(
                session,
                topic=topic_for(r.msg),
                reason="unknown_kiosk",
                detail=f"kiosk {r.msg.kiosk_id} is not registered",
                payload=encode(r.msg),
                received_ms=r.received_ms,
            )

        # 2. Receipts: the (kiosk_id, seq) primary key decides what is new. Online/Offline
        #    carry seq 0 and are ordered by conn instead, so they get no receipt.
        first: dict[tuple[str, int], Received] = {}
        presence_msgs: list[Received] = []
        for r in known:
            if isinstance(r.msg, Online | Offline):
                presence_msgs.append(r)
            elif (r.msg.kiosk_id, r.msg.seq) in first:
                out.duplicates.append(r.msg)
            else:
                first[(r.msg.kiosk_id, r.msg.seq)] = r
        new_keys = repo.insert_receipts(
            session,
            [
                {
                    "kiosk_id": k,
                    "seq": s,
                    "msg_type": int(msg_type(r.msg)),
                    "kiosk_time": kiosk_time(r.msg.ts_ms),
                    "received_at": from_ms(r.received_ms),
                }
                for (k, s), r in first.items()
            ],
        )
        fresh_ids = {id(r) for key, r in first.items() if key in new_keys}
        fresh_ids.update(id(r) for r in presence_msgs)
        todo: list[Received] = []
        for r in known:
            if id(r) in fresh_ids:
                todo.append(r)
            elif (
                not isinstance(r.msg, Online | Offline)
                and first.get((r.msg.kiosk_id, r.msg.seq)) is r
            ):
                out.duplicates.append(r.msg)
        todo = _in_seq_order(todo)
        if not todo:
            return out

        # 3. Load and lock everything the batch touches, a few statements in all.
        states = repo.lock_states(session, {r.msg.kiosk_id for r in todo})
        slots = _Slots(
            repo.load_slots(session, _slots_wanted(todo, slot_counts)),
            {k: s.snapshot_seq for k, s in states.items()},
        )
        commands = repo.commands_by_id(
            session, {r.msg.cmd_id for r in todo if isinstance(r.msg, CmdResult)}
        )

        # 4. Apply in order.
        views = {k: _presence_view(s) for k, s in states.items()}
        was_online = {k: s.online for k, s in states.items()}
        new_rows: defaultdict[type[Any], list[dict[str, Any]]] = defaultdict(list)
        plays: list[tuple[Play, datetime]] = []
        results: list[tuple[CmdResult, datetime]] = []
        slot_events: list[tuple[SlotEvent, str | None, datetime, datetime]] = []
        for r in todo:
            m, now = r.msg, from_ms(r.received_ms)
            state, view = states[m.kiosk_id], views[m.kiosk_id]
            out.applied.append(m)
            if isinstance(m, Online):
                views[m.kiosk_id] = rules.apply_online(view, m.conn, m.ts_ms, r.received_ms) or view
                continue
            if isinstance(m, Offline):
                views[m.kiosk_id] = rules.apply_offline(view, m.conn, r.received_ms) or view
                continue
            newest = m.seq > view.max_seq
            views[m.kiosk_id] = rules.apply_sequenced(
                view,
                m.seq,
                m.ts_ms,
                r.received_ms,
                conn=m.conn if isinstance(m, Boot) else None,
                tolerance_ms=self.live_tolerance_ms,
            )
            observed = kiosk_time(m.ts_ms)
            match m:
                case Boot():
                    if newest or state.firmware is None:
                        state.firmware = m.firmware
                case Heartbeat():
                    if newest:
                        state.signal_dbm = m.signal_dbm
                        if m.playlist_version is not None:
                            state.playlist_version = m.playlist_version
                    agreeing = slots.all_agree(m.kiosk_id, m.slots)
                    for slot_no, reported in enumerate(() if agreeing else m.slots, start=1):
                        believed = slots.view(m.kiosk_id, slot_no)
                        outcome = rules.apply_snapshot(believed, m.seq, reported)
                        if outcome.slot is None:
                            continue
                        if outcome.believed is not None:
                            new_rows[SlotDisagreement].append(
                                {
                                    "kiosk_id": m.kiosk_id,
                                    "slot_no": slot_no,
                                    "heartbeat_seq": m.seq,
                                    "believed_status": outcome.believed.status.value,
                                    "believed_tag": outcome.believed.tag,
                                    "reported_status": outcome.slot.status.value,
                                    "reported_tag": outcome.slot.tag,
                                    "detected_at": now,
                                }
                            )
                        if rules.same_state(believed, outcome.slot):
                            continue  # confirmed by snapshot_seq below, no row written
                        slots.store(m.kiosk_id, slot_no, outcome.slot, observed, now)
                    if m.seq > slots.snapshot_seq[m.kiosk_id]:
                        slots.snapshot_seq[m.kiosk_id] = m.seq
                case SlotEvent():
                    tag = rules.tag_hex(m.tag)
                    new_rows[SlotEventRecord].append(
                        {
                            "kiosk_id": m.kiosk_id,
                            "seq": m.seq,
                            "slot_no": m.slot,
                            "kind": m.kind.value,
                            "tag": tag,
                            "cmd_id": m.cmd_id,
                            "kiosk_time": observed,
                            "received_at": now,
                        }
                    )
                    slot_events.append((m, tag, observed, now))
                    applied = rules.apply_slot_event(
                        slots.view(m.kiosk_id, m.slot), m.seq, m.kind, tag
                    )
                    if applied is not None:
                        slots.store(m.kiosk_id, m.slot, applied, observed, now)
                case Fault():
                    new_rows[KioskFault].append(
                        {
                            "kiosk_id": m.kiosk_id,
                            "seq": m.seq,
                            "slot_no": m.slot,
                            "code": m.code,
                            "active": m.active,
                            "detail": m.detail,
                            "kiosk_time": observed,
                            "received_at": now,
                        }
                    )
                    if m.slot is not None:
                        applied = rules.apply_fault(
                            slots.view(m.kiosk_id, m.slot), m.seq, m.code, m.active
                        )
                        if applied is not None:
                            slots.store(m.kiosk_id, m.slot, applied, observed, now)
                case CmdResult():
                    record = commands.get(m.cmd_id)
                    if record is None:
                        # Answers a downlink that is not a recorded command (a playlist):
                        # the `on_results` hook's to match.
                        results.append((m, now))
                    elif record.kiosk_id == m.kiosk_id:
                        # The kiosk's answer is the truth, even after the sender gave up.
                        record.status = m.status.value
                        record.result_at = now
                    out.cmd_results.append(m)
                case Play():
                    plays.append((m, now))

        # 5. Write back presence; report flips.
        for k, state in states.items():
            view = views[k]
            _store_presence(state, view)
            if state.snapshot_seq != slots.snapshot_seq[k]:
                state.snapshot_seq = slots.snapshot_seq[k]
            if view.online and not was_online[k]:
                out.went_online.append(k)
            elif was_online[k] and not view.online:
                out.went_offline.append(k)
            out.presence.append(Presence(k, view.online, view.conn, view.last_seen_ms))

        repo.update_slots(session, list(slots.changed.values()))
        for model, rows in new_rows.items():
            repo.insert_rows(session, model, rows)
        if plays and self.on_play is not None:
            self.on_play(session, plays)
        if results and self.on_results is not None:
            self.on_results(session, results)
        if self.on_slots is not None and (slot_events or slots.changed):
            self.on_slots(
                session,
                SlotActivity(
                    events=slot_events,
                    changed=[(k, n, slots.rows[(k, n)][1]) for k, n in slots.changed],
                ),
            )
        session.flush()
        return out
