"""Fault injection on the outgoing stream, and the CLI fault profile."""

from __future__ import annotations

import random

import pytest

from device_sim.faults import FaultProfile, KioskFaults, UplinkMangler


def mangle(faults: KioskFaults, items: list[int], seed: int = 1) -> list[int]:
    m: UplinkMangler[int] = UplinkMangler(faults, random.Random(seed))
    out: list[int] = []
    for item in items:
        out += m.feed(item)
    return out + m.flush()


def test_no_faults_leave_the_stream_alone() -> None:
    assert mangle(KioskFaults(), list(range(100))) == list(range(100))


def test_dup_publishes_every_message_twice_in_a_row() -> None:
    assert mangle(KioskFaults(dup=1.0), [1, 2, 3]) == [1, 1, 2, 2, 3, 3]


def test_reorder_swaps_adjacent_messages_and_loses_none() -> None:
    assert mangle(KioskFaults(reorder=1.0), [1, 2, 3, 4]) == [2, 1, 4, 3]
    out = mangle(KioskFaults(reorder=0.3), list(range(200)))
    assert sorted(out) == list(range(200))
    assert out != list(range(200))
    # every message is at most one place away from where it was sent
    assert all(abs(pos - item) <= 1 for pos, item in enumerate(out))


def test_a_held_message_is_flushed_when_nothing_follows() -> None:
    m: UplinkMangler[int] = UplinkMangler(KioskFaults(reorder=1.0), random.Random(0))
    assert m.feed(1) == []
    assert m.flush() == [1]
    assert m.flush() == []


def test_reset_forgets_the_held_message_on_a_drop() -> None:
    m: UplinkMangler[int] = UplinkMangler(KioskFaults(reorder=1.0), random.Random(0))
    m.feed(1)
    m.reset()
    assert m.flush() == []


def test_fault_profile_parses_the_cli_syntax() -> None:
    p = FaultProfile.parse("drop=0.01, dup=0.05,skew=30000,slow=0.1,slow_s=8")
    assert (p.drop, p.dup, p.skew, p.slow, p.slow_s) == (0.01, 0.05, 30000, 0.1, 8.0)
    assert FaultProfile.parse("") == FaultProfile()
    assert not FaultProfile.parse("").any
    with pytest.raises(ValueError, match="bad fault"):
        FaultProfile.parse("explode=1")
    with pytest.raises(ValueError, match="negative"):
        FaultProfile.parse("dup=-1")


def test_each_kiosk_gets_a_skew_within_the_profile_bound() -> None:
    p = FaultProfile(skew=5000, dup=0.2, lose=0.5)
    rng = random.Random(3)
    faults = [p.for_kiosk(rng) for _ in range(100)]
    assert all(-5000 <= f.clock_skew_ms <= 5000 for f in faults)
    assert len({f.clock_skew_ms for f in faults}) > 50
    assert all(f.dup == 0.2 and f.lose_results == 0.5 for f in faults)
