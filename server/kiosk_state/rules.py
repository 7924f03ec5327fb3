"""Pure rules of kiosk presence and slot reconciliation. No I/O; unit-tested without a db.

Messages reach the cloud late, twice and out of order (QoS 1 redelivery, shared
subscriptions spreading one kiosk's messages over several bridges, kiosks replaying what
they buffered offline). These rules make the result independent of that order:

* Presence is ordered by the kiosk's connection counter `conn`, never by arrival. The Last
  Will of connection 5 (`Offline(conn=5)`) cannot undo `Online(conn=6)`. Within one
  connection, Offline comes after Online, so `Online(c)` after `Offline(c)` is stale.
* A sequenced message proves the kiosk is connected only if it is *live*: its kiosk
  timestamp, corrected by the known clock skew, is close to the receive time, and it was
  produced after we last marked the kiosk offline. A replayed or long-delayed message is
  history, not presence.
* A slot holds the state set by the newest message (by `seq`) that spoke about it.
  Older slot events still go to history; they do not overwrite.
* A heartbeat snapshot is the kiosk's own view: when it is newer than what we believe and
  contradicts it, the contradiction is recorded and the snapshot wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from firmware_protocol.messages import SlotEventKind, SlotState
from server.models.kiosk import SlotStatus

#: How far (ms) a message's skew-corrected kiosk time may lag the receive time and still
#: count as live. Three heartbeat intervals of the default configuration.
DEFAULT_LIVE_TOLERANCE_MS = 180_000


def tag_hex(tag: bytes | None) -> str | None:
    """Tags are bytes on the wire and uppercase hex in the database."""
    return None if tag is None else tag.hex().upper()


# ---------------------------------------------------------------- presence


@dataclass(frozen=True, slots=True)
class PresenceView:
    online: bool
    conn: int
    #: Server time (ms) of the last online/offline flip; None until the first presence fact.
    changed_ms: int | None
    #: Receive time minus kiosk clock (ms), from the newest live message; None if unknown.
    skew_ms: int | None
    max_seq: int
    last_seen_ms: int | None
    #: Server time (ms) the skew estimate was last lowered or re-based (see estimate_skew).
    skew_at_ms: int | None = None


def estimate_skew(
    p: PresenceView, sample_ms: int, received_ms: int, *, live: bool, window_ms: int
) -> tuple[int | None, int | None]:
    """(skew, when) after one more sample of `receive time - kiosk time`.

    A live message's sample is the skew plus its network delay; a replayed one adds its age.
    So the lowest recent sample is the best estimate (firmware SPEC §8): a kiosk clock
    stepped forward lowers the samples and is adopted at once; one stepped back raises them
    and is adopted when the estimate is older than `window_ms`. With no estimate yet, only a
    live message may set one (a replay would pass its age off as skew).
    """
    if p.skew_ms is None:
        return (sample_ms, received_ms) if live else (None, None)
    stale = p.skew_at_ms is None or received_ms - p.skew_at_ms > window_ms
    if sample_ms <= p.skew_ms or stale:
        return sample_ms, received_ms
    return p.skew_ms, p.skew_at_ms


def apply_online(p: PresenceView, conn: int, ts_ms: int, received_ms: int) -> PresenceView | None:
    """`Online(conn)`: the kiosk published it right after CONNACK. None means stale/no-op."""
    first_presence = p.changed_ms is None
    if conn > p.conn or (conn == p.conn and first_presence and not p.online):
        return replace(
            p,
            online=True,
            conn=conn,
            changed_ms=p.changed_ms if p.online else received_ms,
            skew_ms=received_ms - ts_ms,  # sent right after CONNACK: always live
            skew_at_ms=received_ms,
            last_seen_ms=_later(p.last_seen_ms, received_ms),
        )
    return None  # same connection already applied, or its Offline came first: stale


def apply_offline(p: PresenceView, conn: int, received_ms: int) -> PresenceView | None:
    """`Offline(conn)`: the Last Will of connection `conn`, published by the broker."""
    if conn < p.conn:
        return None  # the Will of an older connection: the kiosk has reconnected since
    if conn == p.conn and not p.online and p.changed_ms is not None:
        return None  # already offline for this connection
    return replace(p, online=False, conn=conn, changed_ms=received_ms)


def is_live(p: PresenceView, ts_ms: int, received_ms: int, tolerance_ms: int) -> bool:
    """Produced recently (skew-corrected) and after the kiosk was last marked offline."""
    produced_ms = ts_ms + (p.skew_ms or 0)
    if abs(received_ms - produced_ms) > tolerance_ms:
        return False
    return p.online or p.changed_ms is None or produced_ms > p.changed_ms


def apply_sequenced(
    p: PresenceView,
    seq: int,
    ts_ms: int,
    received_ms: int,
    *,
    conn: int | None = None,
    tolerance_ms: int = DEFAULT_LIVE_TOLERANCE_MS,
) -> PresenceView:
    """Any newly received sequenced message (`conn` given for Boot, which carries it)."""
    live = is_live(p, ts_ms, received_ms, tolerance_ms)
    online, new_conn, changed = p.online, p.conn, p.changed_ms
    if live:
        if not online:
            online, changed = True, received_ms
        if conn is not None and conn > new_conn:
            new_conn = conn
    skew, skew_at = estimate_skew(
        p, received_ms - ts_ms, received_ms, live=live, window_ms=tolerance_ms
    )
    return PresenceView(
        online=online,
        conn=new_conn,
        changed_ms=changed,
        skew_ms=skew,
        max_seq=max(p.max_seq, seq),
        last_seen_ms=_later(p.last_seen_ms, received_ms),
        skew_at_ms=skew_at,
    )


def is_silent(p: PresenceView, now_ms: int, timeout_ms: int) -> bool:
    """An online kiosk we have not heard from for `timeout_ms` (no Last Will needed)."""
    return p.online and (p.last_seen_ms is None or now_ms - p.last_seen_ms > timeout_ms)


def _later(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


# ---------------------------------------------------------------- slots


@dataclass(frozen=True, slots=True)
class SlotView:
    status: SlotStatus
    tag: str | None
    fault_code: int | None
    #: seq of the message that set this state; 0 = nothing known yet.
    applied_seq: int


UNKNOWN_SLOT = SlotView(SlotStatus.EMPTY, None, None, 0)


def _status(tag: str | None, fault_code: int | None) -> SlotStatus:
    if fault_code is not None:
        return SlotStatus.FAULT
    return SlotStatus.UMBRELLA if tag is not None else SlotStatus.EMPTY


def reported(state: SlotState, seq: int) -> SlotView:
    """A heartbeat's view of one slot."""
    tag = tag_hex(state.tag)
    return SlotView(_status(tag, state.fault), tag, state.fault, seq)


def apply_slot_event(
    slot: SlotView, seq: int, kind: SlotEventKind, tag: str | None
) -> SlotView | None:
    """None: an older event than the slot's state; keep it in history, change nothing.

    A fault is not cleared by an insert or removal; only a fault clear or a snapshot does.
    """
    if seq <= slot.applied_seq:
        return None
    new_tag = tag if kind is SlotEventKind.INSERTED else None
    return SlotView(_status(new_tag, slot.fault_code), new_tag, slot.fault_code, seq)


def apply_fault(slot: SlotView, seq: int, code: int, active: bool) -> SlotView | None:
    """A slot fault raised or cleared. A clear falls back to what the tag says until the
    next snapshot confirms it (a wrong guess shows up there as a disagreement)."""
    if seq <= slot.applied_seq:
        return None
    if active:
        return SlotView(SlotStatus.FAULT, slot.tag, code, seq)
    if slot.fault_code is not None and slot.fault_code != code:
        return None  # clearing a fault this slot does not have
    return SlotView(_status(slot.tag, None), slot.tag, None, seq)


def same_state(a: SlotView, b: SlotView) -> bool:
    """Same physical state, whatever seq each was learnt at."""
    return (a.status, a.tag, a.fault_code) == (b.status, b.tag, b.fault_code)


@dataclass(frozen=True, slots=True)
class SnapshotOutcome:
    slot: SlotView | None  # None: the snapshot is older than the slot's state
    believed: SlotView | None = None  # set when the snapshot contradicted our belief


def apply_snapshot(slot: SlotView, seq: int, state: SlotState) -> SnapshotOutcome:
    if seq <= slot.applied_seq:
        return SnapshotOutcome(None)
    new = reported(state, seq)
    knew_something = slot.applied_seq > 0
    differs = (slot.status, slot.tag) != (new.status, new.tag)
    return SnapshotOutcome(new, slot if knew_something and differs else None)
