"""Scenarios: timed steps acting on a running Fleet.

A `Step` is anything with an `at_s` (seconds after the scenario starts) and an
`apply(fleet)` returning a one-line description; later work adds rider steps the same way.
A `Scenario` yields its steps lazily, in time order, so a long random scenario (`churn`)
costs no memory up front. `run_scenario` sleeps between steps in the calling thread and
reports each applied step to a progress callback.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from device_sim.fleet import Fleet, FleetStats
from device_sim.kiosk import RiderAction


@runtime_checkable
class Step(Protocol):
    @property
    def at_s(self) -> float: ...

    def apply(self, fleet: Fleet) -> str: ...


@dataclass(frozen=True, slots=True)
class DropKiosk:
    at_s: float
    kiosk_id: str
    offline_s: float = 5.0

    def apply(self, fleet: Fleet) -> str:
        fleet.kiosk(self.kiosk_id).drop(self.offline_s)
        return f"drop {self.kiosk_id} for {self.offline_s:g} s"


@dataclass(frozen=True, slots=True)
class PowerCycle:
    at_s: float
    kiosk_id: str
    off_s: float = 2.0

    def apply(self, fleet: Fleet) -> str:
        fleet.kiosk(self.kiosk_id).power_cycle(self.off_s)
        return f"power-cycle {self.kiosk_id} ({self.off_s:g} s off)"


@dataclass(frozen=True, slots=True)
class InsertUmbrella:
    at_s: float
    kiosk_id: str
    slot: int
    tag: bytes

    def apply(self, fleet: Fleet) -> str:
        fleet.kiosk(self.kiosk_id).insert_umbrella(self.slot, self.tag)
        return f"insert {self.tag.hex()} into {self.kiosk_id}/{self.slot}"


@dataclass(frozen=True, slots=True)
class RemoveUmbrella:
    at_s: float
    kiosk_id: str
    slot: int

    def apply(self, fleet: Fleet) -> str:
        tag = fleet.kiosk(self.kiosk_id).remove_umbrella(self.slot)
        return f"remove {tag.hex()} from {self.kiosk_id}/{self.slot}"


@dataclass(frozen=True, slots=True)
class JamSlot:
    at_s: float
    kiosk_id: str
    slot: int
    clear: bool = False

    def apply(self, fleet: Fleet) -> str:
        handle = fleet.kiosk(self.kiosk_id)
        if self.clear:
            handle.clear_jam(self.slot)
            return f"clear jam {self.kiosk_id}/{self.slot}"
        handle.jam(self.slot)
        return f"jam {self.kiosk_id}/{self.slot}"


@dataclass(frozen=True, slots=True)
class SetRider:
    at_s: float
    kiosk_id: str
    action: RiderAction

    def apply(self, fleet: Fleet) -> str:
        fleet.kiosk(self.kiosk_id).push_rider(self.action)
        return f"next rider at {self.kiosk_id}: {self.action}"


@dataclass(frozen=True, slots=True)
class Call:
    """Any callable as a step (for ad-hoc scenarios and tests)."""

    at_s: float
    fn: Callable[[Fleet], str]

    def apply(self, fleet: Fleet) -> str:
        return self.fn(fleet)


class Scenario(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def steps(self, fleet: Fleet, rng: random.Random) -> Iterable[Step]: ...


@dataclass(frozen=True, slots=True)
class StepList:
    """A fixed scenario: the given steps, sorted by time."""

    name: str
    items: tuple[Step, ...]
    description: str = ""

    def steps(self, fleet: Fleet, rng: random.Random) -> Iterable[Step]:
        return sorted(self.items, key=lambda s: s.at_s)


@dataclass(frozen=True, slots=True)
class Churn:
    """Random returns, manual removals and short connection drops across the fleet.

    `rate` is events per second over the whole fleet; a fifth of them are drops.
    Returns use tags made up for the scenario, so they look like umbrellas from
    elsewhere; removals take a random umbrella out (a staff rebalancing).
    """

    duration_s: float = 60.0
    rate: float = 5.0
    drop_share: float = 0.2
    offline_s: float = 5.0
    name: str = "churn"
    description: str = "random inserts/removals and drops across the fleet"

    def steps(self, fleet: Fleet, rng: random.Random) -> Iterator[Step]:
        ids = fleet.kiosk_ids
        t = 0.0
        n = 0
        while ids:
            t += rng.expovariate(self.rate)
            if t >= self.duration_s:
                return
            kiosk_id = rng.choice(ids)
            r = rng.random()
            if r < self.drop_share:
                yield DropKiosk(t, kiosk_id, self.offline_s * rng.uniform(0.5, 1.5))
                continue
            n += 1
            yield _ChurnSlot(t, kiosk_id, rng.random() < 0.5, rng.getrandbits(64), n)


@dataclass(frozen=True, slots=True)
class _ChurnSlot:
    """Insert into a random empty slot, or remove from a random full one, decided when
    applied (the kiosk's state is only known then)."""

    at_s: float
    kiosk_id: str
    insert: bool
    salt: int
    n: int

    def apply(self, fleet: Fleet) -> str:
        handle = fleet.kiosk(self.kiosk_id)
        rng = random.Random(self.salt)
        empty, full = handle.empty_slots(), sorted(handle.umbrellas())
        if (self.insert and empty) or not full:
            if not empty:
                return f"{self.kiosk_id}: no slot to act on"
            slot = rng.choice(empty)
            tag = self.salt.to_bytes(8, "big")
            handle.insert_umbrella(slot, tag)
            return f"insert {tag.hex()} into {self.kiosk_id}/{slot}"
        slot = rng.choice(full)
        tag = handle.remove_umbrella(slot)
        return f"remove {tag.hex()} from {self.kiosk_id}/{slot}"


@dataclass(frozen=True, slots=True)
class Outage:
    """A share of the fleet loses its connection at once, then all come back together:
    the broker sees a burst of wills, then a reconnect storm with buffered replays."""

    share: float = 0.2
    at_s: float = 5.0
    offline_s: float = 20.0
    settle_s: float = 30.0
    name: str = "outage"
    description: str = "drop a share of the fleet at once, reconnect storm after"

    def steps(self, fleet: Fleet, rng: random.Random) -> Iterator[Step]:
        ids = fleet.kiosk_ids
        for kiosk_id in rng.sample(ids, max(1, round(len(ids) * self.share))) if ids else []:
            yield DropKiosk(self.at_s, kiosk_id, self.offline_s)
        yield Call(self.at_s + self.offline_s + self.settle_s, lambda f: "settled")


SCENARIOS: dict[str, Callable[[float], Scenario]] = {
    "churn": lambda duration: Churn(duration_s=duration),
    "outage": lambda duration: Outage(settle_s=max(0.0, duration - 25.0)),
}


@dataclass(frozen=True, slots=True)
class Progress:
    index: int
    at_s: float
    description: str
    stats: FleetStats


def run_scenario(
    fleet: Fleet,
    scenario: Scenario,
    *,
    seed: int = 0,
    progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    speed: float = 1.0,
) -> int:
    """Apply the scenario's steps at their times (divided by `speed`). Returns the number
    of steps applied; stops early when `stop` is set. A step that fails (e.g. a slot
    changed meanwhile) is reported and skipped."""
    rng = random.Random(seed)
    stop = stop or threading.Event()
    start = time.monotonic()
    applied = 0
    for index, step in enumerate(scenario.steps(fleet, rng)):
        delay = start + step.at_s / speed - time.monotonic()
        if delay > 0 and stop.wait(delay):
            break
        if stop.is_set():
            break
        try:
            text = step.apply(fleet)
        except (ValueError, KeyError) as e:
            text = f"skipped: {e}"
        else:
            applied += 1
        if progress is not None:
            progress(Progress(index, step.at_s, text, fleet.stats()))
    return applied
