"""A fleet of simulated kiosks in one process, and thread-safe handles to each kiosk.

    fleet = Fleet(read_credentials("kiosks.csv"), "127.0.0.1", 1883, heartbeat_s=1)
    with fleet:
        fleet.wait_all_online(timeout=60)
        k = fleet.kiosk("K0001")
        k.push_rider(LEAVE)          # the next unlock is not taken
        k.insert_umbrella(3, tag)    # emits SlotEvent(INSERTED)

Handles may be used from any thread: each call runs on the fleet's loop thread and
returns when the kiosk has acted (its uplinks are sent or buffered by then).
"""

from __future__ import annotations

import logging
import random
import resource
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from device_sim.credentials import KioskCredential
from device_sim.faults import FaultProfile, KioskFaults
from device_sim.flash import FlashStore
from device_sim.kiosk import (
    BUFFER_LIMIT,
    FIRMWARE,
    SLOT_COUNT,
    Kiosk,
    RiderAction,
    tag_for,
)
from device_sim.transport import (
    MISC_INTERVAL_S,
    Connector,
    EventLoop,
    KioskLink,
    TimerHandle,
    TransportStats,
)
from firmware_protocol.messages import (
    CmdResult,
    DownlinkMessage,
    Heartbeat,
    SlotEvent,
    SlotState,
    UplinkMessage,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
FLASH_CHECK_S = 1.0
"""How often the loop checks whether a kiosk needs a fresh flash reservation."""
Fill = Callable[[str], Mapping[int, bytes]]
"""Initial stock of a kiosk: kiosk id -> {slot number: RFID tag}; missing slots are empty."""


def default_fill(kiosk_id: str, seed: int = 0) -> dict[int, bytes]:
    """14-18 of the 22 slots hold an umbrella; tags derive from (seed, kiosk id, slot)."""
    rng = random.Random(f"{seed}:{kiosk_id}")
    chosen = sorted(rng.sample(range(1, SLOT_COUNT + 1), rng.randint(14, 18)))
    return {n: tag_for(kiosk_id, n, salt=str(seed)) for n in chosen}


@dataclass(frozen=True, slots=True)
class FleetStats:
    total: int
    connected: int
    published: int
    """MQTT publishes, including replays and injected duplicates."""
    acked: int
    buffered: int
    """Sequenced uplinks not yet acknowledged by the broker, over all kiosks."""
    reconnects: int
    connect_attempts: int
    connect_failures: int
    auth_failures: int
    downlinks: int
    decode_errors: int
    emitted: int
    """Sequenced uplinks the kiosks produced (each counted once)."""
    loop_errors: int


class KioskHandle:
    """Thread-safe remote control of one simulated kiosk."""

    def __init__(self, fleet: Fleet, link: KioskLink) -> None:
        self._fleet = fleet
        self._link = link
        self.kiosk_id = link.kiosk.kiosk_id

    def __repr__(self) -> str:
        return f"KioskHandle({self.kiosk_id!r})"

    def _call(self, fn: Callable[[Kiosk], T]) -> T:
        return self._fleet._loop.run_sync(lambda: fn(self._link.kiosk))

    # ----------------------------------------------------------- reading

    @property
    def online(self) -> bool:
        return self._link.online

    @property
    def seq(self) -> int:
        """The last sequence number used (0 before the first sequenced uplink)."""
        return self._link.kiosk.seq

    @property
    def conn(self) -> int:
        return self._link.kiosk.conn

    @property
    def buffered(self) -> int:
        return len(self._link.kiosk.buffer)

    def slots(self) -> tuple[SlotState, ...]:
        return self._call(lambda k: k.snapshot())

    def umbrellas(self) -> dict[int, bytes]:
        """Slot number -> tag of every umbrella in the kiosk (jammed slots included)."""
        return self._call(lambda k: k.umbrellas())

    def empty_slots(self) -> list[int]:
        """Slots a rider can return an umbrella into (empty and not jammed)."""
        return self._call(lambda k: k.empty_slots())

    def uplinks(self) -> list[UplinkMessage]:
        """The last 1000 uplinks this kiosk produced (Online included), oldest first.

        This is what the kiosk sent or buffered, before dup/reorder faults."""
        return self._call(lambda k: list(k.history))

    def pending(self) -> list[UplinkMessage]:
        """Sequenced uplinks not yet acknowledged by the broker (what a reconnect replays)."""
        return self._call(lambda k: list(k.buffer))

    def downlinks(self) -> list[DownlinkMessage]:
        return self._call(lambda k: list(k.downlinks))

    def faults(self) -> KioskFaults:
        return self._call(lambda k: replace(k.faults))

    # ----------------------------------------------------------- acting

    def insert_umbrella(self, slot: int, tag: bytes) -> SlotEvent:
        return self._call(lambda k: k.insert_umbrella(slot, tag))

    def remove_umbrella(self, slot: int) -> bytes:
        """Take the umbrella out. During an unlock this is the rider taking it (TAKEN);
        otherwise a manual removal (SlotEvent REMOVED without cmd_id). Returns the tag."""
        return self._call(lambda k: k.remove_umbrella(slot))

    def jam(self, slot: int) -> None:
        self._call(lambda k: k.jam(slot))

    def clear_jam(self, slot: int) -> None:
        self._call(lambda k: k.clear_jam(slot))

    def push_rider(self, *actions: RiderAction) -> None:
        """Queue what the riders of the next unlocks do, one action per unlock."""
        self._call(lambda k: k.riders.extend(actions))

    def set_rider(self, action: RiderAction) -> None:
        """What riders do once the queue of `push_rider` actions is used up."""

        def apply(k: Kiosk) -> None:
            k.default_rider = action

        self._call(apply)

    def set_faults(self, **changes: Any) -> None:
        """Change fault switches, e.g. `set_faults(lose_results=1.0, clock_skew_ms=-90_000)`.
        Names are the fields of `KioskFaults`."""
        names = {f.name for f in fields(KioskFaults)}
        unknown = set(changes) - names
        if unknown:
            raise TypeError(f"unknown fault switches: {sorted(unknown)}")

        def apply(k: Kiosk) -> None:
            for name, value in changes.items():
                setattr(k.faults, name, value)

        self._call(apply)

    def set_screen(self, on: bool) -> None:
        self._call(lambda k: k.set_screen(on))

    def heartbeat(self) -> Heartbeat:
        """Send a heartbeat now (the periodic ones continue)."""
        return self._call(lambda k: k.heartbeat())

    def drop(self, offline_s: float = 5.0) -> None:
        """Lose the connection now (no DISCONNECT: the broker publishes the Offline will)
        and reconnect after `offline_s`; uplinks meanwhile are buffered and replayed."""
        self._fleet._loop.run_sync(lambda: self._link.drop(offline_s))

    def disconnect(self) -> None:
        """Like `drop`, but stay offline until `reconnect()`."""
        self._fleet._loop.run_sync(lambda: self._link.drop(float("inf")))

    def reconnect(self) -> None:
        self._fleet._loop.run_sync(self._link.reconnect)

    def power_cycle(self, off_s: float = 1.0) -> None:
        """Power off (connection lost, open locks shut, pending commands forgotten), then
        power on after `off_s`: the next connection sends Boot."""
        loop = self._fleet._loop

        def off() -> None:
            self._link.drop(float("inf"))
            self._link.kiosk.power_off()
            loop.call_later(off_s, on)

        def on() -> None:
            self._link.kiosk.power_on()
            self._link.reconnect()

        loop.run_sync(off)

    # ----------------------------------------------------------- waiting

    def wait_online(self, timeout: float = 10.0) -> None:
        _wait(lambda: self._link.online, timeout, f"{self.kiosk_id} did not come online")

    def wait_offline(self, timeout: float = 10.0) -> None:
        _wait(lambda: not self._link.online, timeout, f"{self.kiosk_id} did not go offline")

    def wait_uplink(
        self, predicate: Callable[[UplinkMessage], bool], timeout: float = 10.0
    ) -> UplinkMessage:
        """The first uplink in `uplinks()` that matches, waiting for one to appear."""
        found: list[UplinkMessage] = []

        def check() -> bool:
            for msg in self.uplinks():
                if predicate(msg):
                    found.append(msg)
                    return True
            return False

        _wait(check, timeout, f"{self.kiosk_id}: no matching uplink")
        return found[0]

    def wait_result(self, cmd_id: str, timeout: float = 10.0) -> CmdResult:
        msg = self.wait_uplink(lambda m: isinstance(m, CmdResult) and m.cmd_id == cmd_id, timeout)
        assert isinstance(msg, CmdResult)
        return msg

    def wait_drained(self, timeout: float = 10.0) -> None:
        """Wait until the broker has acknowledged every buffered uplink."""
        _wait(lambda: self._link.online and self.buffered == 0, timeout, "buffer not drained")


class Fleet:
    """Simulated kiosks, each with its own MQTT connection and credentials, in one process.

    `screen` is off by default: proof-of-play records multiply traffic (one per spot per
    kiosk). `fill` overrides the initial stock (default: `default_fill(kiosk_id, seed)`).

    `flash_file` keeps each kiosk's `seq` and `conn` across processes, as firmware keeps
    them in flash (see `device_sim.flash`): loaded here (a corrupt file raises
    `FlashError`, a missing one starts every kiosk at 0), kept ahead of the counters while
    the fleet runs and written exactly at `stop()`. Without it every kiosk starts at 0,
    which a cloud that has seen an earlier run drops as duplicates.
    """

    def __init__(
        self,
        credentials: Sequence[KioskCredential],
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        heartbeat_s: float = 60.0,
        screen: bool = False,
        seed: int = 0,
        unlock_window_s: float = 30.0,
        faults: FaultProfile | None = None,
        fill: Fill | None = None,
        connect_rate: float = 250.0,
        keepalive: int = 60,
        firmware: str = FIRMWARE,
        buffer_limit: int = BUFFER_LIMIT,
        flash_file: Path | None = None,
    ) -> None:
        if len({c.kiosk_id for c in credentials}) != len(credentials):
            raise ValueError("duplicate kiosk ids in credentials")
        # first: a corrupt file raises before anything needs closing
        self._flash = FlashStore(Path(flash_file)) if flash_file is not None else None
        self.host, self.port = host, port
        self.profile = faults or FaultProfile()
        self._rng = random.Random(seed)
        self._loop = EventLoop()
        self._connector = Connector(self._loop, rate=connect_rate)
        self._stats = TransportStats()
        self._links: dict[str, KioskLink] = {}
        self._handles: dict[str, KioskHandle] = {}
        self._timers: dict[str, TimerHandle] = {}
        self._started = False
        self._stopped = False
        for cred in credentials:
            krng = random.Random(f"{seed}:{cred.kiosk_id}:kiosk")
            kiosk = Kiosk(
                cred.kiosk_id,
                self._loop,
                slots=(fill or (lambda kid: default_fill(kid, seed)))(cred.kiosk_id),
                heartbeat_s=heartbeat_s,
                unlock_window_s=unlock_window_s,
                screen=screen,
                faults=self.profile.for_kiosk(krng),
                rng=krng,
                firmware=firmware,
                signal_dbm=krng.randint(-95, -60),
                buffer_limit=buffer_limit,
            )
            if self._flash is not None:
                stored = self._flash.initial(cred.kiosk_id)
                kiosk.seq, kiosk.conn = stored.seq, stored.conn
            link = KioskLink(
                kiosk,
                cred.password,
                host,
                port,
                self._loop,
                self._connector,
                self._stats,
                keepalive=keepalive,
                rng=random.Random(f"{seed}:{cred.kiosk_id}:link"),
            )
            self._links[cred.kiosk_id] = link
            self._handles[cred.kiosk_id] = KioskHandle(self, link)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._started:
            raise RuntimeError("a Fleet starts once")
        self._started = True
        _raise_fd_limit(len(self._links) + 256)
        if self._flash is not None:  # reserve before any kiosk uses a seq or conn
            self._flash.reserve(self._counters())
        self._loop.start()
        self._loop.run_sync(self._start_in_loop)

    def _start_in_loop(self) -> None:
        for link in self._links.values():
            link.kiosk.power_on()
            link.start()
        self._every("misc", MISC_INTERVAL_S, self._misc)
        if self._flash is not None:
            self._every("flash", FLASH_CHECK_S, self._reserve_flash)
        if self.profile.drop:
            self._every("drops", 1.0, self._random_drops)

    def _every(self, name: str, interval: float, fn: Callable[[], None]) -> None:
        def tick() -> None:
            fn()
            self._timers[name] = self._loop.call_later(interval, tick)

        self._timers[name] = self._loop.call_later(interval, tick)

    def _misc(self) -> None:
        for link in self._links.values():
            link.misc()

    def _counters(self) -> dict[str, tuple[int, int]]:
        return {kid: (link.kiosk.seq, link.kiosk.conn) for kid, link in self._links.items()}

    def _reserve_flash(self) -> None:
        assert self._flash is not None
        try:
            self._flash.reserve(self._counters())
        except OSError:  # keep simulating; the next tick tries again
            log.exception("cannot write the simulator flash file %s", self._flash.path)

    def _random_drops(self) -> None:
        chance = self.profile.drop / 60.0
        for link in self._links.values():
            if link.online and self._rng.random() < chance:
                link.drop(self.profile.drop_s * self._rng.uniform(0.5, 1.5))

    def stop(self) -> None:
        """Cut every connection (the broker publishes each kiosk's Offline will) and stop."""
        if self._stopped:
            return
        self._stopped = True
        if self._started:

            def stop_all() -> None:
                for t in self._timers.values():
                    t.cancel()
                for link in self._links.values():
                    link.stop()
                    link.kiosk.power_off()

            self._loop.run_sync(stop_all)
            # connect workers still running hand their clients back to the loop, which
            # closes them (the link is stopped), so the loop stops last
            self._connector.shutdown()
            self._loop.stop()
            if self._flash is not None:  # the loop is stopped: counters no longer move
                self._flash.save_exact(self._counters())
        self._loop.close()

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ access

    @property
    def kiosk_ids(self) -> list[str]:
        return list(self._links)

    def kiosk(self, kiosk_id: str) -> KioskHandle:
        return self._handles[kiosk_id]

    def __iter__(self) -> Iterator[KioskHandle]:
        return iter(list(self._handles.values()))

    def __len__(self) -> int:
        return len(self._links)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn` on the fleet's loop thread (where kiosks may be touched directly)."""
        return self._loop.run_sync(fn, timeout)

    def online_count(self) -> int:
        return sum(1 for link in self._links.values() if link.online)

    def wait_all_online(self, timeout: float = 60.0) -> None:
        """Raise TimeoutError unless every kiosk is connected within `timeout` seconds."""
        total = len(self._links)
        _wait(
            lambda: self.online_count() == total,
            timeout,
            lambda: f"{self.online_count()}/{total} kiosks online",
        )

    def stats(self) -> FleetStats:
        s = self._stats
        kiosks = [link.kiosk for link in self._links.values()]
        return FleetStats(
            total=len(kiosks),
            connected=self.online_count(),
            published=s.published,
            acked=s.acked,
            buffered=sum(len(k.buffer) for k in kiosks),
            reconnects=s.reconnects,
            connect_attempts=s.connect_attempts,
            connect_failures=s.connect_failures,
            auth_failures=s.auth_failures,
            downlinks=s.downlinks,
            decode_errors=s.decode_errors,
            emitted=sum(k.counters.emitted for k in kiosks),
            loop_errors=self._loop.errors,
        )


def _wait(check: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(what() if callable(what) else what)
        time.sleep(0.02)


def _raise_fd_limit(needed: int) -> None:
    """Each kiosk holds a socket; lift the soft RLIMIT_NOFILE toward the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
