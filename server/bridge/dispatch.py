"""Decoded uplinks → domain, in batches, acknowledged only after commit.

0. On receipt (`submit`, the MQTT network thread), a command's result is handed at once to a
   sender that waits for the kiosk's word alone (`answer_key`: a rent, which settles its
   rental itself under the rental's row lock), ahead of the queue.

One worker thread per bridge process takes what is queued, up to `batch_max` messages, and
for each batch (no lingering by default: while one batch is applied the next one gathers,
so batches grow with the load and a lone message is not held back; measured in
bench/bridge_ingest, a 5 ms linger doubled the median latency at half load):

1. decodes every payload; a bad one is counted under `rejected.<reason>`, logged and
   recorded (never raises);
2. drops what the shared state has already seen (a cheap pre-filter; the receipts table
   stays the authority);
3. applies the rest in ONE transaction (the batch is the entry point that owns it);
4. after commit: marks the keys seen, hands command results to the senders that wait for
   them to be applied (`result_key`), refreshes the presence cache, and only then PUBACKs
   every message of the batch.

A crash before the commit leaves the batch unacknowledged: the broker redelivers it and the
receipts make the replay harmless. If the batch transaction fails, each message is retried
alone; one that still fails is recorded as `apply_failed` and acknowledged, so a poison
message cannot block the stream. When even that record cannot be written (database down),
nothing is acknowledged and the worker backs off and retries.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.orm import Session

from firmware_protocol import DecodeError, decode_uplink, encode, topic_for, topics
from firmware_protocol.messages import (
    Boot,
    CmdResult,
    Fault,
    Heartbeat,
    MsgType,
    Offline,
    Online,
    SlotEvent,
    SlotEventKind,
    UplinkMessage,
)
from server.bridge.connection import Incoming
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import SharedState
from server.delivery.service import record_plays
from server.kiosk_state.service import ApplyOutcome, KioskStateService, Received
from server.playlists.service import record_results as record_playlist_results
from server.rentals.service import apply_slot_activity

log = logging.getLogger(__name__)
#: One DEBUG line per applied uplink; the demo turns it on to show what kiosks report.
uplink_log = logging.getLogger("server.bridge.uplinks")

#: How long a command result waits in the shared state for its sender.
RESULT_TTL_S = 600
#: How long an early answer (`answer_key`) waits: its sender waits at most its own timeout
#: (seconds) and settles a silence itself; what nobody took by then is of no use.
ANSWER_TTL_S = 120
_RESULT_TOPIC_SUFFIX = "/up/" + topics.TOPIC_NAMES[MsgType.CMD_RESULT]


def dedup_key(msg: UplinkMessage) -> str:
    return f"up:{msg.kiosk_id}:{msg.seq}"


def result_key(cmd_id: str) -> str:
    """Where a command's result is handed over once its batch has committed."""
    return f"cmd:{cmd_id}"


def answer_key(cmd_id: str) -> str:
    """Where a command's result is handed over as soon as it is decoded, before its batch's
    transaction: for a sender that settles the answer itself (`CommandChannel.send_prepared`
    with `applied=False`), so the batch is not on its critical path."""
    return f"answer:{cmd_id}"


class Acker(Protocol):
    def ack(self, item: Incoming) -> None: ...


@dataclass(slots=True)
class BatchReport:
    """What one batch did; `process_batch` and `inject` return it."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    went_online: list[str] = field(default_factory=list)
    went_offline: list[str] = field(default_factory=list)
    cmd_results: list[CmdResult] = field(default_factory=list)
    acked: bool = False


@dataclass(frozen=True, slots=True)
class _Reject:
    item: Incoming
    reason: str
    detail: str


class _Stopped(Exception):
    pass


class Dispatcher:
    def __init__(
        self,
        db: Database,
        shared_state: SharedState,
        *,
        acker: Acker | None = None,
        inbox: queue.Queue[Incoming] | None = None,
        service: KioskStateService | None = None,
        batch_max: int = 500,
        linger_s: float = 0.0,
        dedup_ttl_s: int = 7 * 24 * 3600,
        result_ttl_s: int = RESULT_TTL_S,
        answer_ttl_s: int = ANSWER_TTL_S,
        counter_prefix: str = "bridge.",
        retry_backoff_s: float = 1.0,
    ) -> None:
        self.db = db
        self.shared_state = shared_state
        self.acker = acker
        self.inbox: queue.Queue[Incoming] = inbox if inbox is not None else queue.Queue()
        self.service = service or KioskStateService(
            on_slots=apply_slot_activity,
            on_results=record_playlist_results,
            on_play=record_plays,
        )
        self.batch_max = max(1, batch_max)
        self.linger_s = linger_s
        self.dedup_ttl_s = dedup_ttl_s
        self.result_ttl_s = result_ttl_s
        self.answer_ttl_s = answer_ttl_s
        self.counter_prefix = counter_prefix
        self.retry_backoff_s = retry_backoff_s
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._drain_until = 0.0
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        db: Database,
        shared_state: SharedState,
        *,
        acker: Acker | None = None,
        inbox: queue.Queue[Incoming] | None = None,
    ) -> Dispatcher:
        return cls(
            db,
            shared_state,
            acker=acker,
            inbox=inbox,
            batch_max=settings.bridge_batch_max,
            dedup_ttl_s=settings.dedup_ttl_s,
            # Per process, so operators see how the shared subscription splits the load.
            counter_prefix=f"bridge.{settings.bridge_id}.",
            service=KioskStateService(
                live_tolerance_ms=settings.presence_timeout_s * 1000,
                on_slots=apply_slot_activity,
                on_results=record_playlist_results,
                on_play=record_plays,
            ),
        )

    # ------------------------------------------------------------ thread

    def submit(self, item: Incoming) -> None:
        """Thread-safe; what the MQTT network thread calls for each message. A command's
        result is also handed over at once to a sender waiting for the kiosk's word alone
        (step 0 of the module docstring)."""
        if item.topic.endswith(_RESULT_TOPIC_SUFFIX):
            self._hand_over_answer(item)
        self.inbox.put(item)

    def _hand_over_answer(self, item: Incoming) -> None:
        """Push the result under `answer_key`, on the network thread: not behind the batches
        queued or in hand, which may hold the slot event that came just before it. A bad
        payload is left to the worker, which rejects and counts it. A redelivered copy is
        pushed again and expires unread: each unlock has a command id of its own, which only
        the cloud knows, and its sender decodes the answer against the kiosk's own topic."""
        try:
            message = decode_uplink(item.topic, item.payload)
        except DecodeError:
            return
        if not isinstance(message, CmdResult):
            return
        try:
            self.shared_state.push_result(
                answer_key(message.cmd_id), encode(message), self.answer_ttl_s
            )
        except Exception:
            log.error("could not hand over the answer to command %s", message.cmd_id, exc_info=True)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bridge-dispatch", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0, *, drain: bool = False) -> None:
        """Finish the batch in hand; what is still queued stays unacknowledged (redelivered).

        `drain=True` first applies everything already queued (a graceful shutdown after
        the connection left the shared subscription), within `timeout_s`.
        """
        self._drain_until = time.monotonic() + timeout_s if drain else 0.0
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s + 5 if drain else timeout_s)
            self._thread = None

    def _running(self) -> bool:
        if not self._stop.is_set():
            return True
        return self.inbox.qsize() > 0 and time.monotonic() < self._drain_until

    def _run(self) -> None:
        while self._running():
            batch = self._take_batch()
            if batch:
                try:
                    self.process_batch(batch)
                except Exception:  # never let the worker die; unacked messages come back
                    log.exception("batch of %d messages failed unexpectedly", len(batch))

    def _take_batch(self) -> list[Incoming]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.linger_s
        while len(batch) < self.batch_max:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def stats(self) -> dict[str, int]:
        with self._stats_lock:
            out = dict(self._stats)
        out["queued"] = self.inbox.qsize()
        return out

    # ------------------------------------------------------------ one batch

    def process_batch(self, items: Sequence[Incoming]) -> BatchReport:
        report = BatchReport(received=len(items))
        decoded: list[tuple[Incoming, UplinkMessage]] = []
        rejects: list[_Reject] = []
        for it in items:
            try:
                decoded.append((it, decode_uplink(it.topic, it.payload)))
            except DecodeError as e:
                rejects.append(_Reject(it, e.reason, e.detail))

        sequenced = [(it, m) for it, m in decoded if not isinstance(m, Online | Offline)]
        seen = self._seen([dedup_key(m) for _, m in sequenced])
        seen_ids = {id(m) for (_, m), s in zip(sequenced, seen, strict=True) if s}
        fresh = [Received(m, it.received_ms) for it, m in decoded if id(m) not in seen_ids]

        try:
            outcome, failed = self._apply(rejects, fresh)
        except _Stopped:
            return report  # nothing acknowledged: the broker redelivers on reconnect

        # -- after commit
        unknown_ids = {id(m) for m in outcome.unknown}
        report.applied = len(outcome.applied)
        report.duplicates = len(outcome.duplicates) + len(seen_ids)
        report.went_online, report.went_offline = outcome.went_online, outcome.went_offline
        report.cmd_results = [
            m for _, m in decoded if isinstance(m, CmdResult) and id(m) not in unknown_ids
        ]
        for r in rejects:
            report.rejected[r.reason] += 1
        if outcome.unknown:
            report.rejected["unknown_kiosk"] += len(outcome.unknown)
        if failed:
            report.rejected["apply_failed"] += failed
        for r in rejects:
            log.info("rejected uplink on %s: %s %s", r.item.topic[:120], r.reason, r.detail)
        self._after_commit(outcome, report)
        if self.acker is not None:
            for it in items:
                self.acker.ack(it)
            report.acked = True
        return report

    def _seen(self, keys: list[str]) -> list[bool]:
        if not keys:
            return []
        try:
            return self.shared_state.seen_many(keys)
        except Exception:  # a pre-filter outage only costs database work
            log.warning("duplicate pre-filter unavailable", exc_info=True)
            return [False] * len(keys)

    def _apply(self, rejects: list[_Reject], fresh: list[Received]) -> tuple[ApplyOutcome, int]:
        """(what was applied, how many messages failed alone)."""
        try:
            with self.db.transaction(immediate=True) as session:
                for r in rejects:
                    self._record_reject(session, reject=r)
                return self.service.apply_batch(session, fresh), 0
        except Exception:
            log.warning(
                "batch of %d failed; retrying message by message",
                len(rejects) + len(fresh),
                exc_info=True,
            )
        total = ApplyOutcome()
        failed = 0
        for r in rejects:
            self._until_done(functools.partial(self._record_reject, reject=r))
        for f in fresh:
            got = self._apply_alone(f)
            if got is None:
                failed += 1
            else:
                _merge(total, got)
        return total, failed

    def _apply_alone(self, item: Received) -> ApplyOutcome | None:
        """Apply one message in its own transaction; None if it had to be rejected."""
        while True:
            try:
                with self.db.transaction(immediate=True) as session:
                    return self.service.apply_batch(session, [item])
            except Exception as e:
                error = e
                log.exception("uplink %s failed alone", _describe(item.msg))
            try:
                with self.db.transaction(immediate=True) as session:
                    self.service.record_rejected(
                        session,
                        topic=topic_for(item.msg),
                        reason="apply_failed",
                        detail=f"{type(error).__name__}: {error}",
                        payload=encode(item.msg),
                        received_ms=item.received_ms,
                    )
                log.info("rejected uplink %s: apply_failed", _describe(item.msg))
                return None
            except Exception:
                # Even the rejection cannot be written: the database is down, not the
                # message bad. Keep it unacknowledged and retry the message itself.
                self._backoff()

    def _until_done(self, work: Callable[[Session], None]) -> None:
        while True:
            try:
                with self.db.transaction(immediate=True) as session:
                    work(session)
                return
            except Exception:
                self._backoff()

    def _backoff(self) -> None:
        log.exception("database unavailable; retrying in %.1f s", self.retry_backoff_s)
        if self._stop.wait(self.retry_backoff_s):
            raise _Stopped()

    def _record_reject(self, session: Session, reject: _Reject) -> None:
        r = reject
        self.service.record_rejected(
            session,
            topic=r.item.topic,
            reason=r.reason,
            detail=r.detail,
            payload=r.item.payload,
            received_ms=r.item.received_ms,
        )

    def _after_commit(self, outcome: ApplyOutcome, report: BatchReport) -> None:
        state = self.shared_state
        keys = [
            dedup_key(m)
            for m in (*outcome.applied, *outcome.duplicates)
            if not isinstance(m, Online | Offline)
        ]
        try:
            if keys:
                state.mark_seen(keys, self.dedup_ttl_s)
            if outcome.presence:
                state.set_presence_many(outcome.presence)
        except Exception:
            log.warning("shared state unavailable after commit", exc_info=True)
        # Stats first: whoever sees a result must also see it counted.
        counts: Counter[str] = Counter(
            received=report.received, applied=report.applied, duplicates=report.duplicates
        )
        for reason, n in report.rejected.items():
            counts[f"rejected.{reason}"] += n
        with self._stats_lock:
            self._stats.update(counts)
        try:
            state.incr_many({self.counter_prefix + k: v for k, v in counts.items()})
        except Exception:
            log.debug("shared counters unavailable", exc_info=True)
        # Results of duplicates are pushed again: a bridge that died between its commit and
        # its push leaves the sender waiting, and the redelivered copy must still reach it.
        for result in report.cmd_results:
            try:
                state.push_result(result_key(result.cmd_id), encode(result), self.result_ttl_s)
            except Exception:
                log.error(
                    "could not hand over the result of command %s", result.cmd_id, exc_info=True
                )
        for k in outcome.unknown:
            log.info("rejected uplink from unknown kiosk %s: unknown_kiosk", k.kiosk_id)
        for kiosk_id in report.went_online:
            log.info("kiosk %s online", kiosk_id)
        for kiosk_id in report.went_offline:
            log.info("kiosk %s offline", kiosk_id)
        if uplink_log.isEnabledFor(logging.DEBUG):
            for m in outcome.applied:
                uplink_log.debug("%s", describe_report(m))


def _merge(total: ApplyOutcome, part: ApplyOutcome) -> None:
    total.applied += part.applied
    total.duplicates += part.duplicates
    total.unknown += part.unknown
    total.cmd_results += part.cmd_results
    total.presence += part.presence
    total.went_online += part.went_online
    total.went_offline += part.went_offline


def describe_report(msg: UplinkMessage) -> str:
    """One human line of what a kiosk reported (the demo screen, debug logs)."""
    k = msg.kiosk_id
    match msg:
        case Boot():
            return f"kiosk {k} booted: firmware {msg.firmware}, {msg.slot_count} slots"
        case Heartbeat():
            full = sum(1 for s in msg.slots if s.tag is not None and s.fault is None)
            faults = sum(1 for s in msg.slots if s.fault is not None)
            return (
                f"kiosk {k} heartbeat: {full} umbrellas, {len(msg.slots) - full - faults} empty,"
                f" {faults} faulty, signal {msg.signal_dbm} dBm"
            )
        case SlotEvent():
            verb = "returned to" if msg.kind is SlotEventKind.INSERTED else "taken from"
            tag = msg.tag.hex().upper() if msg.tag else "?"
            return f"kiosk {k}: umbrella {tag} {verb} slot {msg.slot}"
        case CmdResult():
            return f"kiosk {k}: command {msg.cmd_id} -> {msg.status.value}"
        case Fault():
            where = f"slot {msg.slot}" if msg.slot is not None else "kiosk"
            state = "raised" if msg.active else "cleared"
            return f"kiosk {k}: fault {msg.code} on {where} {state} {msg.detail}".rstrip()
    return _describe(msg)


def _describe(msg: UplinkMessage) -> str:
    return f"{type(msg).__name__} kiosk={msg.kiosk_id} seq={msg.seq}"


def inject(
    dispatcher: Dispatcher,
    *messages: UplinkMessage | tuple[str, bytes],
    received_ms: int | None = None,
) -> BatchReport:
    """Feed messages to a dispatcher as if they had arrived from the broker, as one batch.

    Like home-assistant's `async_fire_mqtt_message`: decoded messages are encoded and go
    through the whole path (decode, pre-filter, apply, after-commit); a `(topic, payload)`
    pair injects raw bytes, e.g. a malformed payload. Synchronous; no broker, no thread.
    """
    at = clock.now_ms() if received_ms is None else received_ms
    items = [
        Incoming(m[0], m[1], received_ms=at)
        if isinstance(m, tuple)
        else Incoming(topic_for(m), encode(m), received_ms=at)
        for m in messages
    ]
    return dispatcher.process_batch(items)
