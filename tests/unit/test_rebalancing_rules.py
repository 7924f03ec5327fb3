"""Rebalancing rules (server/rebalancing/rules.py), every figure computed by hand."""

from __future__ import annotations

import pytest

from server.rebalancing.rules import KioskStock, Move, Params, distance_m, project, suggest

P = Params(horizon_hours=3, low_fraction=0.25, high_fraction=0.75, min_quantity=2)


def _k(
    kiosk_id: str, umbrellas: int, *, lon: float = 121.0, out: float = 0, back: float = 0
) -> KioskStock:
    return KioskStock(
        kiosk_id, 31.0, lon, umbrellas, 20, rentals_per_hour=out, returns_per_hour=back
    )


def test_a_kiosk_inside_its_band_after_the_horizon_neither_gives_nor_needs() -> None:
    # 10 umbrellas, net -1/h for 3 h -> 7; band [ceil(5), floor(15)] = [5, 15]
    p = project(_k("A", 10, out=2, back=1), P)
    assert (p.projected, p.target_low, p.target_high, p.balance) == (7, 5, 15, 0)


def test_a_kiosk_draining_below_its_band_needs_up_to_half_full() -> None:
    # 3 - 1 x 3 = 0 < 5: needs 10 - 0 = 10 (it has 17 free slots)
    p = project(_k("A", 3, out=1), P)
    assert (p.projected, p.balance) == (0, -10)


def test_a_full_kiosk_gives_down_to_half_full() -> None:
    assert project(_k("B", 20), P).balance == 10


def test_a_kiosk_filling_up_gives_only_the_umbrellas_it_holds_now() -> None:
    # 8 + 4 x 3 = 20 (capped at capacity) > 15: would give 10, holds 8
    p = project(_k("B", 8, back=4), P)
    assert (p.projected, p.balance) == (20, 8)


def test_a_nearly_full_kiosk_that_will_drain_needs_only_as_many_as_it_has_free_slots() -> None:
    # 19 - 7 x 3 < 0 -> 0: would need 10, has 1 free slot
    assert project(_k("A", 19, out=7), P).balance == -1


def test_faulty_slots_reduce_the_capacity_the_band_is_computed_on() -> None:
    p = project(KioskStock("A", 31.0, 121.0, umbrellas=9, capacity=10), P)
    # band [ceil(2.5), floor(7.5)] = [3, 7]; 9 > 7 gives down to 5
    assert (p.target_low, p.target_high, p.balance) == (3, 7, 4)


def test_distance_along_a_parallel_is_the_cosine_of_the_latitude() -> None:
    # 0.01 degree of longitude at 31 N: 6371000 x 0.01 x pi/180 x cos(31) = 953.1 m
    assert distance_m(31.0, 121.0, 31.0, 121.01) == pytest.approx(953.1, abs=0.5)


def test_a_deficit_is_filled_from_the_nearest_surplus_first_then_the_next() -> None:
    a = _k("A", 3, out=1)  # needs 10
    b = _k("B", 16, lon=121.01)  # 16 > 15: gives 6, 953 m away
    c = _k("C", 20, lon=121.05)  # gives 10, 4.77 km away
    _, moves = suggest([c, a, b], P)
    assert [(m.from_kiosk_id, m.to_kiosk_id, m.quantity) for m in moves] == [
        ("B", "A", 6),
        ("C", "A", 4),
    ]
    assert moves[0].distance_m == 953
    assert moves[1].distance_m == 4766


def test_the_largest_deficit_is_served_first_when_surplus_is_short() -> None:
    a = _k("A", 3, out=1)  # needs 10
    d = _k("D", 5, lon=121.001, out=1)  # 5 - 3 = 2 < 5: needs 8, and is nearer to B
    b = _k("B", 16, lon=121.002)  # gives 6
    _, moves = suggest([b, d, a], P)
    assert moves == [Move("B", "A", 6, round(distance_m(31.0, 121.002, 31.0, 121.0)))]


def test_moves_below_the_minimum_quantity_are_not_suggested() -> None:
    a = _k("A", 19, out=7)  # needs 1
    b = _k("B", 20, lon=121.01)  # gives 10
    _, moves = suggest([a, b], P)
    assert moves == []


def test_a_balanced_fleet_gets_no_suggestions() -> None:
    projections, moves = suggest([_k("A", 10), _k("B", 11, lon=121.01)], P)
    assert moves == []
    assert [p.balance for p in projections] == [0, 0]
