"""What a simulated rider does next (device_sim/riders.py), without a server: the decision,
what an answer does to the rider, which answers a busy network produces, where riders walk."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from device_sim.riders import (
    OK,
    WAIT,
    Action,
    CrowdStats,
    Phase,
    RiderState,
    RiderTiming,
    classify_error,
    decide,
    describe,
    fail,
    new_state,
    pick_kiosk,
    random_point,
    transition,
)

TIMING = RiderTiming(
    idle_s=(10.0, 20.0), hold_s=(30.0, 60.0), retry_s=(1.0, 2.0), think_s=(0.5, 1.0)
)
REFUSED = fail("kiosk_offline", expected=True)


def rng() -> random.Random:
    return random.Random(42)


def ready(**changes: Any) -> RiderState:
    state = RiderState(phase=Phase.READY, trips_planned=2)
    for name, value in changes.items():
        setattr(state, name, value)
    return state


# -- decide ---------------------------------------------------------------------------------


def test_a_new_rider_logs_in_then_pays_the_deposit_then_waits_for_it() -> None:
    assert decide(RiderState(phase=Phase.NEW), stopping=False) is Action.LOGIN
    assert decide(RiderState(phase=Phase.NO_DEPOSIT), stopping=False) is Action.PAY_DEPOSIT
    assert decide(RiderState(phase=Phase.PAYING), stopping=False) is Action.CHECK_DEPOSIT


def test_a_rider_with_the_deposit_held_and_trips_left_rents() -> None:
    assert decide(ready(trips_done=1), stopping=False) is Action.RENT


@pytest.mark.parametrize(("withdraw", "expected"), [(True, Action.WITHDRAW), (False, Action.LEAVE)])
def test_after_the_last_trip_a_rider_withdraws_the_deposit_or_just_leaves(
    withdraw: bool, expected: Action
) -> None:
    state = ready(trips_done=2, withdraw_at_end=withdraw)

    assert decide(state, stopping=False) is expected


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase.NEW, Action.LEAVE),
        (Phase.NO_DEPOSIT, Action.LEAVE),
        (Phase.READY, Action.LEAVE),
        (Phase.RIDING, Action.RETURN),
        (Phase.PAYING, Action.CHECK_DEPOSIT),
        (Phase.RETURNING, Action.CHECK_RETURN),
        (Phase.WITHDRAWING, Action.CHECK_REFUND),
    ],
)
def test_when_the_crowd_stops_umbrellas_come_back_and_nothing_new_starts(
    phase: Phase, expected: Action
) -> None:
    state = RiderState(phase=phase, trips_planned=3, withdraw_at_end=True)

    assert decide(state, stopping=True) is expected


def test_new_riders_plan_their_trips_and_a_share_of_them_withdraws() -> None:
    timing = RiderTiming(trips=(1, 3), withdraw_share=0.3)
    r = rng()
    states = [new_state(timing, r) for _ in range(2000)]

    assert {s.trips_planned for s in states} == {1, 2, 3}
    assert all(s.phase is Phase.NEW for s in states)
    assert 0.25 < sum(s.withdraw_at_end for s in states) / len(states) < 0.35


# -- transition -----------------------------------------------------------------------------


def test_a_successful_rent_keeps_the_umbrella_for_a_hold_time_compressed_by_pace() -> None:
    state = ready(rent_failures=1)
    fast = RiderTiming(hold_s=(30.0, 60.0), pace=3.0)

    delay = transition(state, Action.RENT, OK, fast, rng())

    assert state.phase is Phase.RIDING
    assert state.rent_failures == 0
    assert 10.0 <= delay <= 20.0


def test_refused_rents_are_retried_soon_and_the_trip_is_given_up_after_the_last_attempt() -> None:
    state = ready()
    r = rng()

    delays = [transition(state, Action.RENT, REFUSED, TIMING, r) for _ in range(3)]

    assert all(1.0 <= d <= 2.0 for d in delays[:2])  # retry
    assert 10.0 <= delays[2] <= 20.0  # idle before the next trip
    assert (state.phase, state.trips_done, state.rent_failures) == (Phase.READY, 1, 0)


def test_a_return_the_server_confirmed_completes_the_trip() -> None:
    state = RiderState(phase=Phase.RIDING, trips_planned=2)

    transition(state, Action.RETURN, OK, TIMING, rng())
    assert state.phase is Phase.RETURNING
    transition(state, Action.CHECK_RETURN, OK, TIMING, rng())

    assert (state.phase, state.trips_done) == (Phase.READY, 1)


def test_a_return_with_no_free_slot_nearby_keeps_the_umbrella_and_tries_again() -> None:
    state = RiderState(phase=Phase.RIDING)

    delay = transition(
        state, Action.RETURN, fail("no_free_slot_nearby", expected=True), TIMING, rng()
    )

    assert state.phase is Phase.RIDING
    assert 1.0 <= delay <= 2.0


def test_waiting_for_the_server_polls_without_changing_the_phase() -> None:
    state = RiderState(phase=Phase.PAYING)

    delays = [transition(state, Action.CHECK_DEPOSIT, WAIT, TIMING, rng()) for _ in range(3)]

    assert delays == [TIMING.poll_s] * 3
    assert (state.phase, state.polls) == (Phase.PAYING, 3)
    transition(state, Action.CHECK_DEPOSIT, OK, TIMING, rng())
    assert (state.phase, state.polls) == (Phase.READY, 0)


def test_a_failed_deposit_request_is_retried_with_the_same_key_an_unconfirmed_one_not() -> None:
    state = RiderState(phase=Phase.NO_DEPOSIT)

    transition(state, Action.PAY_DEPOSIT, fail("http_500", expected=False), TIMING, rng())
    assert (state.phase, state.deposit_attempts) == (Phase.NO_DEPOSIT, 0)

    transition(state, Action.PAY_DEPOSIT, OK, TIMING, rng())
    transition(state, Action.CHECK_DEPOSIT, fail("deposit pending", expected=False), TIMING, rng())
    assert (state.phase, state.deposit_attempts) == (Phase.NO_DEPOSIT, 1)


def test_a_refused_withdrawal_ends_the_rider_without_waiting_for_a_refund() -> None:
    state = ready(trips_done=2, withdraw_at_end=True)

    transition(state, Action.WITHDRAW, fail("withdraw_unavailable", expected=True), TIMING, rng())

    assert state.phase is Phase.DONE


def test_a_rider_lives_from_login_to_refund_in_this_order() -> None:
    state = RiderState(trips_planned=1, withdraw_at_end=True)
    answers = {
        Action.CHECK_DEPOSIT: [WAIT, OK],
        Action.CHECK_RETURN: [WAIT, WAIT, OK],
        Action.CHECK_REFUND: [WAIT, OK],
    }
    seen: list[Action] = []
    r = rng()
    while state.phase is not Phase.DONE:
        action = decide(state, stopping=False)
        seen.append(action)
        result = answers[action].pop(0) if action in answers else OK
        transition(state, action, result, TIMING, r)
        assert len(seen) < 50

    assert seen == [
        Action.LOGIN,
        Action.PAY_DEPOSIT,
        Action.CHECK_DEPOSIT,
        Action.CHECK_DEPOSIT,
        Action.RENT,
        Action.RETURN,
        Action.CHECK_RETURN,
        Action.CHECK_RETURN,
        Action.CHECK_RETURN,
        Action.WITHDRAW,
        Action.CHECK_REFUND,
        Action.CHECK_REFUND,
    ]


def test_pace_must_be_positive() -> None:
    with pytest.raises(ValueError, match="pace"):
        RiderTiming(pace=0)


# -- classify_error -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (409, "kiosk_offline"),
        (409, "no_umbrella_available"),
        (409, "slots_jammed"),
        (409, "umbrella_not_taken"),
        (504, "kiosk_timeout"),
    ],
)
def test_rent_refusals_of_a_busy_network_are_expected(status: int, code: str) -> None:
    result = classify_error(Action.RENT, status, {"error": code, "message": "..."})

    assert (result.kind, result.reason, result.expected) == ("fail", code, True)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (409, {"error": "rental_open"}, "rental_open"),
        (409, {"error": "deposit_required"}, "deposit_required"),
        (404, {"error": "unknown_kiosk"}, "unknown_kiosk"),
        (500, None, "http_500"),
        (422, {"detail": []}, "http_422"),
    ],
)
def test_rent_answers_that_point_at_a_bug_are_unexpected(
    status: int, body: object, reason: str
) -> None:
    result = classify_error(Action.RENT, status, body)

    assert (result.reason, result.expected) == (reason, False)


def test_wechat_busy_at_login_is_expected_a_server_error_is_not() -> None:
    assert classify_error(Action.LOGIN, 503, {"error": "wechat_busy"}).expected
    assert classify_error(Action.LOGIN, 429, {"error": "rate_limited"}).expected
    assert not classify_error(Action.LOGIN, 500, None).expected


def test_a_server_without_the_withdraw_endpoint_is_tolerated() -> None:
    missing = classify_error(Action.WITHDRAW, 404, {"detail": "Not Found"})
    refused = classify_error(Action.WITHDRAW, 409, {"error": "rental_open"})

    assert (missing.reason, missing.expected) == ("withdraw_unavailable", True)
    assert (refused.reason, refused.expected) == ("rental_open", False)


# -- where riders walk ----------------------------------------------------------------------


def item(kiosk_id: str, umbrellas: int = 5, free_slots: int = 5) -> dict[str, Any]:
    return {
        "id": kiosk_id,
        "lat": 30.0,
        "lon": 120.0,
        "umbrellas": umbrellas,
        "free_slots": free_slots,
    }


def test_riders_pick_among_the_nearest_kiosks_they_can_reach_that_have_what_they_need() -> None:
    items = [
        item("K-elsewhere"),  # not in this simulation
        item("K-empty", umbrellas=0),
        item("K-failed"),  # the rider was just refused here
        item("K1"),
        item("K2"),
        item("K3"),
        item("K4"),  # beyond the three nearest that fit
    ]
    known = {"K-empty", "K-failed", "K1", "K2", "K3", "K4"}
    r = rng()

    picked = {
        choice.kiosk_id
        for _ in range(200)
        if (choice := pick_kiosk(items, known, r, need="umbrella", avoid={"K-failed"}))
    }

    assert picked == {"K1", "K2", "K3"}


def test_a_return_needs_a_free_slot_and_nothing_fitting_means_no_kiosk() -> None:
    items = [item("K1", free_slots=0), item("K2", free_slots=1)]

    choice = pick_kiosk(items, {"K1", "K2"}, rng(), need="free_slot")

    assert choice is not None
    assert choice.kiosk_id == "K2"
    assert pick_kiosk(items[:1], {"K1"}, rng(), need="free_slot") is None


def test_riders_appear_within_the_area_around_the_center() -> None:
    center = (30.2590, 120.1300)
    r = rng()
    for _ in range(500):
        lat, lon = random_point(center, 3_000.0, r)
        dy = math.radians(lat - center[0]) * 6_371_000
        dx = math.radians(lon - center[1]) * 6_371_000 * math.cos(math.radians(center[0]))
        assert math.hypot(dx, dy) <= 3_001.0


# -- the counters line ----------------------------------------------------------------------


def test_the_counters_line_names_refusals_and_unexpected_answers() -> None:
    stats = CrowdStats(
        riders=3,
        by_phase={"riding": 1, "returning": 1, "ready": 1},
        served=4,
        logins=7,
        deposits=7,
        rentals_ok=9,
        rentals_failed={"kiosk_offline": 2},
        returns=8,
        withdrawals=2,
        refunds=2,
        unexpected={"rent: http_500": 1},
        tolerated={},
    )

    line = describe(stats)

    assert "(2 with an umbrella)" in line
    assert "rentals 9 ok, 2 refused (kiosk_offline 2)" in line
    assert "unexpected 1 (rent: http_500 x1)" in line
