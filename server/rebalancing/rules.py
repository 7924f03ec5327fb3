"""Pure rebalancing rules: project each kiosk's stock a few hours ahead from its recent net
flow, and pair surplus kiosks with deficit ones, nearest first, within one partner.

A kiosk's usable capacity is its slots minus the faulty ones. Its target band is
[low, high] = [ceil(low_fraction x capacity), floor(high_fraction x capacity)], aiming at
target = capacity // 2. A kiosk projected above `high` can give down to the target, but only
umbrellas it holds now; one projected below `low` needs up to the target, but only as many
as it has free slots now. Deficits are served largest first (ties by kiosk id), each from
the nearest surplus kiosks (ties by kiosk id); moves below `min_quantity` are not worth a
trip and are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KioskStock:
    kiosk_id: str
    lat: float
    lon: float
    umbrellas: int
    #: Usable slots: slot count minus faulty slots.
    capacity: int
    #: Rentals started here per hour (outflow) and returns here per hour (inflow), measured
    #: over the recent window.
    rentals_per_hour: float = 0.0
    returns_per_hour: float = 0.0

    @property
    def net_flow_per_hour(self) -> float:
        return self.returns_per_hour - self.rentals_per_hour


@dataclass(frozen=True, slots=True)
class Params:
    horizon_hours: float = 3.0
    low_fraction: float = 0.25
    high_fraction: float = 0.75
    min_quantity: int = 2


@dataclass(frozen=True, slots=True)
class Projection:
    kiosk_id: str
    umbrellas: int
    capacity: int
    net_flow_per_hour: float
    projected: int
    target_low: int
    target_high: int
    #: Umbrellas it can give (> 0) or needs (< 0); 0 inside the band.
    balance: int


@dataclass(frozen=True, slots=True)
class Move:
    from_kiosk_id: str
    to_kiosk_id: str
    quantity: int
    distance_m: int


def distance_m(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    dp, dl = p2 - p1, math.radians(b_lon - a_lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(min(1.0, h)))


def project(k: KioskStock, p: Params) -> Projection:
    capacity = max(k.capacity, 0)
    umbrellas = min(max(k.umbrellas, 0), capacity)
    projected = round(umbrellas + k.net_flow_per_hour * p.horizon_hours)
    projected = min(max(projected, 0), capacity)
    low = math.ceil(p.low_fraction * capacity)
    high = math.floor(p.high_fraction * capacity)
    target = capacity // 2
    balance = 0
    if projected > high:
        balance = min(projected - target, umbrellas)
    elif projected < low:
        balance = -min(target - projected, capacity - umbrellas)
    return Projection(
        kiosk_id=k.kiosk_id,
        umbrellas=umbrellas,
        capacity=capacity,
        net_flow_per_hour=k.net_flow_per_hour,
        projected=projected,
        target_low=low,
        target_high=high,
        balance=balance,
    )


def suggest(kiosks: list[KioskStock], p: Params) -> tuple[list[Projection], list[Move]]:
    """Projections of every kiosk, and the moves that bring deficits back into their band."""
    projections = [project(k, p) for k in kiosks]
    where = {k.kiosk_id: k for k in kiosks}
    spare = {x.kiosk_id: x.balance for x in projections if x.balance > 0}
    needs = sorted(
        ((x.kiosk_id, -x.balance) for x in projections if x.balance < 0),
        key=lambda item: (-item[1], item[0]),
    )
    moves: list[Move] = []
    for to_id, need in needs:
        dest = where[to_id]
        by_distance = sorted(
            (distance_m(where[s].lat, where[s].lon, dest.lat, dest.lon), s) for s in spare
        )
        for dist, from_id in by_distance:
            if need < p.min_quantity:
                break
            quantity = min(need, spare[from_id])
            if quantity < p.min_quantity:
                continue
            moves.append(Move(from_id, to_id, quantity, round(dist)))
            spare[from_id] -= quantity
            need -= quantity
    return projections, moves
