"""Fault injection: per-kiosk switches and a fleet-wide profile parsed from the CLI.

Faults a kiosk applies to itself (`KioskFaults`): skewed clock, slow or lost command
results, locks that jam on unlock. Faults the link applies to the outgoing stream
(`UplinkMangler`): duplicated publishes and swapped neighbours. Connection drops are
actions (`KioskHandle.drop`), scheduled at random by a `FaultProfile`'s `drop` rate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class KioskFaults:
    """Switches of one kiosk. Rates are probabilities in [0, 1]; 0 disables a fault."""

    clock_skew_ms: int = 0
    """Added to the kiosk's clock: its ts_ms and its expiry checks use the skewed time."""
    slow_results: float = 0.0
    """Chance that a command result is sent `slow_result_s` late (the action is not)."""
    slow_result_s: float = 5.0
    lose_results: float = 0.0
    """Chance that a command result is never sent (1.0: the kiosk never answers)."""
    jam_on_unlock: float = 0.0
    """Chance that a lock jams when an unlock command tries to open it."""
    dup: float = 0.0
    """Chance that a sequenced uplink is published twice in a row."""
    reorder: float = 0.0
    """Chance that a sequenced uplink is held back and published after the next one."""


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """Fleet-wide fault rates, e.g. `drop=0.01,dup=0.05,skew=30000` on the command line.

    `drop` is the chance per kiosk per minute that its connection drops; it comes back
    after about `drop_s` seconds (uniform in [0.5, 1.5] x drop_s). `skew` is the largest
    clock skew in ms; each kiosk gets a uniform skew in [-skew, +skew].
    """

    drop: float = 0.0
    drop_s: float = 10.0
    dup: float = 0.0
    reorder: float = 0.0
    slow: float = 0.0
    slow_s: float = 5.0
    lose: float = 0.0
    jam: float = 0.0
    skew: int = 0

    @classmethod
    def parse(cls, text: str) -> FaultProfile:
        names = {f.name: f.type for f in fields(cls)}
        values: dict[str, float | int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in names:
                known = ", ".join(names)
                raise ValueError(f"bad fault {part!r}: expected NAME=VALUE with NAME in {known}")
            values[key] = int(raw) if key == "skew" else float(raw)
            if values[key] < 0:
                raise ValueError(f"fault {key} must not be negative")
        return replace(cls(), **values)  # type: ignore[arg-type]

    @property
    def any(self) -> bool:
        return self != FaultProfile()

    def for_kiosk(self, rng: random.Random) -> KioskFaults:
        return KioskFaults(
            clock_skew_ms=rng.randint(-self.skew, self.skew) if self.skew else 0,
            slow_results=self.slow,
            slow_result_s=self.slow_s,
            lose_results=self.lose,
            jam_on_unlock=self.jam,
            dup=self.dup,
            reorder=self.reorder,
        )


@dataclass(slots=True)
class UplinkMangler(Generic[T]):
    """Turns the stream a kiosk sends into the stream its link publishes.

    `feed` returns what to publish now. A held-back item (reorder) goes out right after
    the next one, or on `flush` (the link flushes after a short timer so a quiet kiosk
    does not sit on it). `reset` forgets a held item when the connection drops: the
    kiosk's buffer still has it and replays it.
    """

    faults: KioskFaults
    rng: random.Random
    held: T | None = None
    duplicated: int = 0
    reordered: int = 0

    def feed(self, item: T) -> list[T]:
        if self.held is not None:
            out = [item, self.held]
            self.held = None
            self.reordered += 1
        elif self.faults.reorder and self.rng.random() < self.faults.reorder:
            self.held = item
            return []
        else:
            out = [item]
        return self._dup(out)

    def flush(self) -> list[T]:
        if self.held is None:
            return []
        out = [self.held]
        self.held = None
        return self._dup(out)

    def reset(self) -> None:
        self.held = None

    def _dup(self, items: list[T]) -> list[T]:
        if not self.faults.dup:
            return items
        out: list[T] = []
        for item in items:
            out.append(item)
            if self.rng.random() < self.faults.dup:
                out.append(item)
                self.duplicated += 1
        return out
