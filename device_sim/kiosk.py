"""One simulated kiosk as a state machine, free of any network code.

The kiosk sees the world through two small interfaces: a `Runtime` (its wall clock and
timers) and an `Outbox` (a live MQTT connection, present only while connected). The
transport drives it through `prepare_connect` / `on_connected` / `on_acked` /
`on_disconnected` / `handle_downlink`; tests drive it with a fake runtime and a list.

Everything here follows the rules of firmware_protocol/SPEC.md: sequenced uplinks carry
the next value of a counter kept "in flash" (this object outlives connections), stay in a
bounded buffer until the broker acknowledges them, and are replayed in their original
order with their original seq and ts after a reconnect.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from device_sim.faults import KioskFaults
from firmware_protocol.messages import (
    Boot,
    CmdOp,
    CmdResult,
    CmdStatus,
    Command,
    Config,
    DownlinkMessage,
    Fault,
    Heartbeat,
    Offline,
    Online,
    Play,
    Playlist,
    PlaylistBlock,
    PlaylistSpot,
    SlotEvent,
    SlotEventKind,
    SlotState,
    UplinkMessage,
)

SLOT_COUNT = 22
FIRMWARE = "umb-sim/1.0"
BUFFER_LIMIT = 2000
FAULT_JAM = 1
"""Fault code of a jammed lock, in `Fault.code` and in a heartbeat's `SlotState.fault`."""
HOUSE_SPOT_MS = 10_000
TAG_BYTES = 8
MAX_SEQ = 2**32 - 1
_DONE_CMDS_KEPT = 512
_HISTORY_KEPT = 1000


class Timer(Protocol):
    def cancel(self) -> None: ...


class Runtime(Protocol):
    """The kiosk's view of time. `wall_ms` is true UTC; the kiosk adds its own skew."""

    def wall_ms(self) -> int: ...

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Timer: ...


class Outbox(Protocol):
    """A live connection. `send` publishes at QoS 1; acks come back via `Kiosk.on_acked`."""

    def send(self, msg: UplinkMessage) -> None: ...


@dataclass(frozen=True, slots=True)
class RiderAction:
    """What the rider in front of the kiosk does after an unlock.

    `take=True`: the umbrella leaves the slot `delay_s` after the lock opens (if that is
    within the unlock window). `take=False`: nobody takes it; the slot re-locks when the
    window closes (a test can still take it by hand with `remove_umbrella`).
    """

    take: bool = True
    delay_s: float = 1.0


TAKE = RiderAction(take=True, delay_s=1.0)
LEAVE = RiderAction(take=False)


def take_after(delay_s: float) -> RiderAction:
    return RiderAction(take=True, delay_s=delay_s)


def tag_for(kiosk_id: str, slot: int, salt: str = "") -> bytes:
    """A deterministic, practically unique 8-byte RFID tag for a kiosk's initial stock."""
    return hashlib.blake2b(f"{salt}:{kiosk_id}:{slot}".encode(), digest_size=TAG_BYTES).digest()


@dataclass(slots=True)
class Slot:
    number: int
    tag: bytes | None = None
    locked: bool = True
    jammed: bool = False
    unlock_cmd: str | None = None
    unlock_timer: Timer | None = None

    def state(self) -> SlotState:
        return SlotState(tag=self.tag, fault=FAULT_JAM if self.jammed else None)


class OfflineBuffer:
    """Sequenced uplinks not yet acknowledged by the broker, in seq order.

    Bounded: when full, the oldest Heartbeat goes first (a later one supersedes it), then
    the oldest Boot or Fault. Slot events, command results and plays are never dropped;
    if nothing else is left the buffer grows past its bound and counts `overflow`.
    """

    def __init__(self, limit: int = BUFFER_LIMIT) -> None:
        self.limit = limit
        self._items: OrderedDict[int, UplinkMessage] = OrderedDict()
        self.dropped = 0
        self.overflow = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[UplinkMessage]:
        return iter(list(self._items.values()))

    def __contains__(self, seq: int) -> bool:
        return seq in self._items

    def add(self, msg: UplinkMessage) -> None:
        if len(self._items) >= self.limit and not self._evict():
            self.overflow += 1
        self._items[msg.seq] = msg

    def ack(self, seq: int) -> bool:
        return self._items.pop(seq, None) is not None

    def _evict(self) -> bool:
        for kinds in ((Heartbeat,), (Boot, Fault)):
            for seq, msg in self._items.items():
                if isinstance(msg, kinds):
                    del self._items[seq]
                    self.dropped += 1
                    return True
        return False


@dataclass(slots=True)
class _Screen:
    playlist: Playlist | None = None
    block: PlaylistBlock | None = None
    index: int = 0
    timer: Timer | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: CmdStatus
    slot: int | None = None
    tag: bytes | None = None


@dataclass(slots=True)
class KioskCounters:
    emitted: int = 0
    downlinks: int = 0
    results_lost: int = 0


class Kiosk:
    """22 slots, a lock and RFID reader each, a screen, a modem; see the module docstring.

    Not thread-safe: one thread (the transport's loop, or a test) calls everything.
    """

    def __init__(
        self,
        kiosk_id: str,
        runtime: Runtime,
        *,
        slots: Mapping[int, bytes | None] | None = None,
        slot_count: int = SLOT_COUNT,
        heartbeat_s: float = 60.0,
        unlock_window_s: float = 30.0,
        screen: bool = False,
        faults: KioskFaults | None = None,
        rng: random.Random | None = None,
        firmware: str = FIRMWARE,
        signal_dbm: int = -75,
        buffer_limit: int = BUFFER_LIMIT,
    ) -> None:
        self.kiosk_id = kiosk_id
        self.runtime = runtime
        self.firmware = firmware
        self.heartbeat_s = heartbeat_s
        self.unlock_window_s = unlock_window_s
        self.screen_enabled = screen
        self.faults = faults or KioskFaults()
        self.rng = rng or random.Random(kiosk_id)
        self.signal_dbm = signal_dbm
        self.slots = [Slot(n) for n in range(1, slot_count + 1)]
        for n, tag in (slots or {}).items():
            self._slot(n).tag = _check_tag(tag) if tag is not None else None
        # "flash": survives reconnects and power cycles
        self.seq = 0
        self.conn = 0
        self.buffer = OfflineBuffer(buffer_limit)
        self.playlist: Playlist | None = None
        # volatile
        self.powered = False
        self.outbox: Outbox | None = None
        self.default_rider = TAKE
        self.riders: deque[RiderAction] = deque()
        self.history: deque[UplinkMessage] = deque(maxlen=_HISTORY_KEPT)
        self.downlinks: deque[DownlinkMessage] = deque(maxlen=_HISTORY_KEPT)
        self.counters = KioskCounters()
        self._boot_pending = False
        self._heartbeat_timer: Timer | None = None
        self._screen = _Screen()
        self._done: OrderedDict[str, _Answer] = OrderedDict()
        self._in_progress: set[str] = set()
        self._timers: set[Timer] = set()

    # ------------------------------------------------------------------ time

    def now_ms(self) -> int:
        """The kiosk's own clock: true time plus its (possibly skewed) offset."""
        return max(0, self.runtime.wall_ms() + self.faults.clock_skew_ms)

    def _later(self, delay_s: float, fn: Callable[[], None]) -> Timer:
        holder: list[Timer] = []

        def fire() -> None:
            self._timers.discard(holder[0])
            if self.powered:
                fn()

        timer = self.runtime.call_later(max(0.0, delay_s), fire)
        holder.append(timer)
        self._timers.add(timer)
        return timer

    # ------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        return self.outbox is not None

    def power_on(self) -> None:
        """Boot: the next connection announces itself with a Boot message."""
        if self.powered:
            return
        self.powered = True
        self._boot_pending = True
        self._schedule_heartbeat()
        if self.screen_enabled:
            self._screen_next()

    def power_off(self) -> None:
        """Lose power: timers stop, open locks fall shut, unanswered commands are forgotten.

        The offline buffer, seq and conn counters are in flash and survive.
        """
        self.powered = False
        self.outbox = None
        for timer in list(self._timers):
            timer.cancel()
        self._timers.clear()
        self._heartbeat_timer = None
        self._screen.timer = None
        for slot in self.slots:
            slot.locked, slot.unlock_cmd, slot.unlock_timer = True, None, None
        self._in_progress.clear()

    def prepare_connect(self) -> Offline:
        """Called just before CONNECT: bump `conn` and return the Last Will to register."""
        self.conn = (self.conn + 1) & MAX_SEQ
        return Offline(self.kiosk_id, 0, self.now_ms(), self.conn)

    def on_connected(self, outbox: Outbox) -> None:
        """After CONNACK (the transport has subscribed): Online, Boot, replay, heartbeat."""
        self.outbox = outbox
        backlog = list(self.buffer)
        self._send(Online(self.kiosk_id, 0, self.now_ms(), self.conn))
        if self._boot_pending:
            self._boot_pending = False
            self._emit(
                lambda seq, ts: Boot(
                    self.kiosk_id, seq, ts, self.firmware, len(self.slots), self.conn
                ),
            )
        for msg in backlog:
            if self.outbox is None:  # lost again mid-replay: the rest stays buffered
                return
            if msg.seq in self.buffer:
                self.outbox.send(msg)
        self.heartbeat()
        self._schedule_heartbeat()

    def on_disconnected(self) -> None:
        self.outbox = None

    def on_acked(self, seq: int) -> None:
        self.buffer.ack(seq)

    # ----------------------------------------------------------------- uplink

    def _next_seq(self) -> int:
        self.seq = self.seq + 1 if self.seq < MAX_SEQ else 1
        return self.seq

    def _emit(self, build: Callable[[int, int], UplinkMessage]) -> UplinkMessage:
        """Create a sequenced uplink, keep it until acked, and send it if connected."""
        msg = build(self._next_seq(), self.now_ms())
        self.buffer.add(msg)
        self.counters.emitted += 1
        self._send(msg)
        return msg

    def _send(self, msg: UplinkMessage) -> None:
        self.history.append(msg)
        if self.outbox is not None:
            self.outbox.send(msg)

    def snapshot(self) -> tuple[SlotState, ...]:
        return tuple(s.state() for s in self.slots)

    def heartbeat(self) -> Heartbeat:
        signal = max(-150, min(0, self.signal_dbm + self.rng.randint(-4, 4)))
        plv = self.playlist.version if self.playlist is not None else None
        msg = self._emit(
            lambda seq, ts: Heartbeat(self.kiosk_id, seq, ts, signal, self.snapshot(), plv)
        )
        assert isinstance(msg, Heartbeat)
        return msg

    def _schedule_heartbeat(self) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._timers.discard(self._heartbeat_timer)

        def beat() -> None:
            self._heartbeat_timer = None
            self.heartbeat()
            self._schedule_heartbeat()

        self._heartbeat_timer = self._later(self.heartbeat_s, beat)

    # ------------------------------------------------------------ the slots

    def _slot(self, number: int) -> Slot:
        if not 1 <= number <= len(self.slots):
            raise ValueError(f"{self.kiosk_id} has no slot {number}")
        return self.slots[number - 1]

    def insert_umbrella(self, slot: int, tag: bytes) -> SlotEvent:
        """A rider (or staff) pushes an umbrella into an empty slot; the reader sees its tag."""
        s = self._slot(slot)
        if s.tag is not None:
            raise ValueError(f"{self.kiosk_id} slot {slot} already holds an umbrella")
        s.tag = _check_tag(tag)
        msg = self._emit(
            lambda seq, ts: SlotEvent(self.kiosk_id, seq, ts, slot, SlotEventKind.INSERTED, s.tag)
        )
        assert isinstance(msg, SlotEvent)
        return msg

    def remove_umbrella(self, slot: int) -> bytes:
        """The umbrella leaves the slot: the rider takes it if a command opened the lock,
        otherwise it is a manual removal (staff key, forced lock) without a cmd_id."""
        s = self._slot(slot)
        if s.tag is None:
            raise ValueError(f"{self.kiosk_id} slot {slot} is empty")
        tag = s.tag
        if s.unlock_cmd is not None:
            self._taken(s)
            return tag
        s.tag = None
        self._emit(
            lambda seq, ts: SlotEvent(self.kiosk_id, seq, ts, slot, SlotEventKind.REMOVED, tag)
        )
        return tag

    def jam(self, slot: int) -> None:
        s = self._slot(slot)
        if s.jammed:
            return
        s.jammed = True
        self._emit(lambda seq, ts: Fault(self.kiosk_id, seq, ts, FAULT_JAM, True, slot, "jam"))

    def clear_jam(self, slot: int) -> None:
        s = self._slot(slot)
        if not s.jammed:
            return
        s.jammed = False
        self._emit(lambda seq, ts: Fault(self.kiosk_id, seq, ts, FAULT_JAM, False, slot, "jam"))

    def empty_slots(self) -> list[int]:
        return [s.number for s in self.slots if s.tag is None and not s.jammed]

    def umbrellas(self) -> dict[int, bytes]:
        return {s.number: s.tag for s in self.slots if s.tag is not None}

    # -------------------------------------------------------------- downlink

    def handle_downlink(self, msg: DownlinkMessage) -> None:
        """Every downlink is answered with a CmdResult carrying its cmd_id (SPEC.md §4.3).

        A redelivered downlink (QoS 1 may deliver twice) is never executed twice: while it
        runs the copy is ignored; afterwards the copy gets the original answer again.
        """
        self.downlinks.append(msg)
        self.counters.downlinks += 1
        if msg.cmd_id in self._in_progress:
            return
        done = self._done.get(msg.cmd_id)
        if done is not None:
            self._answer(msg.cmd_id, done.status, done.slot, done.tag)
            return
        match msg:
            case Command(op=CmdOp.PING):
                self._answer(msg.cmd_id, CmdStatus.OK)
            case Command(op=CmdOp.UNLOCK):
                self._unlock(msg)
            case Playlist():
                self.playlist = msg
                self._answer(msg.cmd_id, CmdStatus.OK)
            case Config():
                self.unlock_window_s = float(msg.unlock_window_s)
                if float(msg.heartbeat_s) != self.heartbeat_s:
                    self.heartbeat_s = float(msg.heartbeat_s)
                    if self.powered:
                        self._schedule_heartbeat()
                self._answer(msg.cmd_id, CmdStatus.OK)
            case _:
                self._answer(msg.cmd_id, CmdStatus.REJECTED)

    def _unlock(self, cmd: Command) -> None:
        if self.now_ms() > cmd.expires_ms:
            self._answer(cmd.cmd_id, CmdStatus.EXPIRED, cmd.slot)
            return
        if cmd.slot is None or not 1 <= cmd.slot <= len(self.slots):
            self._answer(cmd.cmd_id, CmdStatus.BAD_SLOT, cmd.slot)
            return
        s = self.slots[cmd.slot - 1]
        if s.tag is None:
            self._answer(cmd.cmd_id, CmdStatus.EMPTY, s.number)
            return
        if not s.jammed and self.rng.random() < self.faults.jam_on_unlock:
            self.jam(s.number)
        if s.jammed:
            self._answer(cmd.cmd_id, CmdStatus.JAMMED, s.number, s.tag)
            return
        if s.unlock_cmd is not None:  # already open for another command
            self._answer(cmd.cmd_id, CmdStatus.REJECTED, s.number)
            return
        s.locked = False
        s.unlock_cmd = cmd.cmd_id
        self._in_progress.add(cmd.cmd_id)
        rider = self.riders.popleft() if self.riders else self.default_rider
        if rider.take and rider.delay_s < self.unlock_window_s:
            s.unlock_timer = self._later(rider.delay_s, lambda: self._taken(s))
        else:
            s.unlock_timer = self._later(self.unlock_window_s, lambda: self._not_taken(s))

    def _close(self, s: Slot) -> str:
        cmd_id = s.unlock_cmd
        assert cmd_id is not None
        if s.unlock_timer is not None:
            s.unlock_timer.cancel()
            self._timers.discard(s.unlock_timer)
        s.locked, s.unlock_cmd, s.unlock_timer = True, None, None
        self._in_progress.discard(cmd_id)
        return cmd_id

    def _taken(self, s: Slot) -> None:
        tag = s.tag
        cmd_id = self._close(s)
        if tag is None:  # removed some other way meanwhile
            self._answer(cmd_id, CmdStatus.EMPTY, s.number)
            return
        s.tag = None
        self._emit(
            lambda seq, ts: SlotEvent(
                self.kiosk_id, seq, ts, s.number, SlotEventKind.REMOVED, tag, cmd_id
            )
        )
        self._answer(cmd_id, CmdStatus.TAKEN, s.number, tag)

    def _not_taken(self, s: Slot) -> None:
        cmd_id = self._close(s)
        self._answer(cmd_id, CmdStatus.NOT_TAKEN, s.number, s.tag)

    def _answer(
        self, cmd_id: str, status: CmdStatus, slot: int | None = None, tag: bytes | None = None
    ) -> None:
        self._done[cmd_id] = _Answer(status, slot, tag)
        while len(self._done) > _DONE_CMDS_KEPT:
            self._done.popitem(last=False)
        f = self.faults
        if f.lose_results and self.rng.random() < f.lose_results:
            self.counters.results_lost += 1
            return

        def send() -> None:
            self._emit(lambda seq, ts: CmdResult(self.kiosk_id, seq, ts, cmd_id, status, slot, tag))

        if f.slow_results and self.rng.random() < f.slow_results:
            self._later(f.slow_result_s, send)
        else:
            send()

    # ---------------------------------------------------------------- screen

    def set_screen(self, on: bool) -> None:
        self.screen_enabled = on
        if not on and self._screen.timer is not None:
            self._screen.timer.cancel()
            self._timers.discard(self._screen.timer)
            self._screen.timer = None
        elif on and self.powered and self._screen.timer is None:
            self._screen_next()

    def _current_spot(self, now: int) -> tuple[PlaylistSpot, int] | None:
        pl = self.playlist
        block = None
        if pl is not None:
            block = next((b for b in pl.blocks if b.start_ms <= now < b.end_ms), None)
        if block is not self._screen.block:
            self._screen.block, self._screen.index = block, 0
        if pl is None or block is None or not block.spots:
            return None
        spot = block.spots[self._screen.index % len(block.spots)]
        self._screen.index += 1
        return spot, pl.version

    def _screen_next(self) -> None:
        """Play the next spot; built-in house content (no playlist) is not reported."""
        started = self.now_ms()
        current = self._current_spot(started)
        duration_ms = max(1000, current[0].duration_ms) if current else HOUSE_SPOT_MS

        def done() -> None:
            self._screen.timer = None
            if current is not None:
                spot, version = current
                play_id = uuid.uuid4().bytes
                self._emit(
                    lambda seq, ts: Play(
                        self.kiosk_id,
                        seq,
                        ts,
                        play_id,
                        spot.creative_id,
                        started,
                        duration_ms,
                        version,
                    )
                )
            if self.screen_enabled:
                self._screen_next()

        self._screen.timer = self._later(duration_ms / 1000, done)


def _check_tag(tag: bytes) -> bytes:
    if not isinstance(tag, bytes) or not 4 <= len(tag) <= 16:
        raise ValueError("an RFID tag is 4..16 bytes")
    return tag
