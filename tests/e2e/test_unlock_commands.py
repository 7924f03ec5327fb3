"""Downlink commands and their answers through the broker (SPEC §1: unlock a slot with a
command id and an expiry; firmware_protocol SPEC §4.3)."""

from __future__ import annotations

import functools

from sqlalchemy import select

from device_sim.fleet import KioskHandle
from device_sim.kiosk import LEAVE, take_after
from firmware_protocol.messages import CmdOp, CmdStatus
from server.bridge.commands import CommandChannel
from server.models import CommandRecord, KioskState
from tests.e2e.conftest import Stack, api_slots, sim_slots
from tests.services import eventually


def _commands(stack: Stack) -> CommandChannel:
    assert stack.bridge is not None
    return stack.bridge.commands


def test_unlocked_umbrella_taken_by_the_rider_answers_taken_and_the_slot_shows_empty(
    stack: Stack,
) -> None:
    fleet = stack.start_fleet(stack.credentials[:2], heartbeat_s=60, unlock_window_s=5)
    fleet.wait_all_online()
    k = fleet.kiosk(fleet.kiosk_ids[0])

    def matches() -> None:
        body = stack.kiosk(k.kiosk_id)
        assert body["online"] is True
        assert api_slots(body) == sim_slots(k)

    eventually(matches)
    slot, tag = min(k.umbrellas().items())

    pong = _commands(stack).send(k.kiosk_id, CmdOp.PING, timeout_s=10)
    assert pong is not None, "no answer to a ping"
    assert pong.status is CmdStatus.OK

    k.push_rider(take_after(0.2))
    result = _commands(stack).send(k.kiosk_id, CmdOp.UNLOCK, slot, timeout_s=10)
    assert result is not None, "no answer to the unlock"
    assert (result.status, result.slot, result.tag) == (CmdStatus.TAKEN, slot, tag)

    def slot_empty() -> None:
        body = stack.kiosk(k.kiosk_id)
        assert body["slots"][slot - 1]["status"] == "empty"
        assert api_slots(body) == sim_slots(k)

    eventually(slot_empty)

    with stack.db.transaction() as s:
        records = {r.op: r.status for r in s.scalars(select(CommandRecord))}
    assert records == {"ping": "ok", "unlock": "taken"}


def test_unlock_nobody_takes_answers_not_taken_and_the_umbrella_stays_in_the_slot(
    stack: Stack,
) -> None:
    fleet = stack.start_fleet(stack.credentials[:1], heartbeat_s=60, unlock_window_s=1)
    fleet.wait_all_online()
    k = fleet.kiosk(fleet.kiosk_ids[0])
    slot, tag = min(k.umbrellas().items())
    k.push_rider(LEAVE)

    result = _commands(stack).send(k.kiosk_id, CmdOp.UNLOCK, slot, timeout_s=10)

    assert result is not None, "no answer to the unlock"
    assert (result.status, result.slot, result.tag) == (CmdStatus.NOT_TAKEN, slot, tag)
    body = stack.kiosk(k.kiosk_id)
    assert body["slots"][slot - 1]["status"] == "umbrella"
    assert body["slots"][slot - 1]["tag"] == tag.hex().upper()


def _online_and_matching(stack: Stack, h: KioskHandle) -> None:
    body = stack.kiosk(h.kiosk_id)
    assert body["online"] is True, f"{h.kiosk_id} offline"
    assert api_slots(body) == sim_slots(h), f"{h.kiosk_id} slots differ"


def test_kiosks_with_clocks_minutes_off_show_online_and_execute_an_unlock_before_its_expiry(
    stack: Stack,
) -> None:
    """firmware_protocol SPEC §8: the cloud writes `exp` in the kiosk's clock using its skew
    estimate, so a kiosk ten minutes behind or ahead neither refuses a fresh command as
    expired nor shows offline because its timestamps look old."""
    fleet = stack.start_fleet(stack.credentials[:2], heartbeat_s=60)
    behind, ahead = (fleet.kiosk(i) for i in fleet.kiosk_ids)
    behind.set_faults(clock_skew_ms=-600_000)
    ahead.set_faults(clock_skew_ms=+600_000)
    fleet.wait_all_online()
    # The skew applies from the next connection's Online on: reconnect both with it.
    for h in (behind, ahead):
        h.drop(offline_s=0.1)
    for h in (behind, ahead):
        h.wait_online()
        h.heartbeat()

    for h in (behind, ahead):
        slot, tag = min(h.umbrellas().items())
        eventually(functools.partial(_online_and_matching, stack, h))
        h.push_rider(take_after(0.2))
        result = _commands(stack).send(h.kiosk_id, CmdOp.UNLOCK, slot, timeout_s=10)
        assert result is not None, f"no answer from {h.kiosk_id}"
        assert (result.status, result.slot, result.tag) == (CmdStatus.TAKEN, slot, tag), (
            f"{h.kiosk_id} (clock {h.faults().clock_skew_ms:+d} ms) answered {result.status}"
        )


def test_unlock_is_executed_after_the_kiosk_corrects_its_clock_by_minutes_while_connected(
    stack: Stack,
) -> None:
    """firmware_protocol SPEC §8: a kiosk that has not synchronised since power-on sends with
    its best guess, then synchronises (at boot and every 6 hours) without reconnecting. The
    cloud must follow the corrected clock: a fresh unlock must not arrive already expired."""
    fleet = stack.start_fleet(stack.credentials[:1], heartbeat_s=60)
    k = fleet.kiosk(fleet.kiosk_ids[0])
    k.wait_online()  # (a drop mid-handshake makes amqtt leave a socket to the GC)
    k.set_faults(clock_skew_ms=-600_000)  # the unsynchronised guess: ten minutes behind
    k.drop(offline_s=0.1)  # reconnect with that clock (Online carries it)
    k.wait_online()
    eventually(functools.partial(_online_and_matching, stack, k))
    body = stack.kiosk(k.kiosk_id)
    assert body["clock_off"] is True, body["clock_skew_ms"]

    k.set_faults(clock_skew_ms=0)  # NTP sync: the clock jumps ten minutes forward
    for _ in range(3):
        k.heartbeat()  # live heartbeats with the corrected clock (SPEC §8 skew estimate)
    slot = min(k.umbrellas())
    k.push_rider(take_after(0.2))

    def heartbeats_applied() -> None:
        with stack.db.transaction() as s:
            state = s.get(KioskState, k.kiosk_id)
            assert state is not None
            assert state.max_seq == k.seq

    eventually(heartbeats_applied)
    assert stack.kiosk(k.kiosk_id)["clock_off"] is False, "the corrected clock is still flagged"
    result = _commands(stack).send(k.kiosk_id, CmdOp.UNLOCK, slot, timeout_s=10)

    assert result is not None, "no answer to the unlock"
    assert result.status is CmdStatus.TAKEN, (
        f"the kiosk answered {result.status.value}: after its clock moved by 10 min while "
        "connected, the cloud still wrote `exp` with the old skew estimate"
    )
