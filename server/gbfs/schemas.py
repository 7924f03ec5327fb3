"""Shapes of GBFS 3.0 document parts (MobilityData/gbfs v3.0 gbfs.md), as TypedDicts.

Not pydantic models: the feeds are built for the whole fleet on every ttl expiry, and plain
dicts serialise several times faster (station_status is even written as JSON text, see
rules.station_status_json). The official JSON schemas check every file in the tests
(tests/data/gbfs-json-schema/v3.0/).
"""

from __future__ import annotations

from typing import TypedDict


class LocalizedString(TypedDict):
    text: str
    language: str


class VehicleDocks(TypedDict):
    vehicle_type_ids: list[str]
    count: int


class Station(TypedDict):
    """station_information.json, one station."""

    station_id: str
    name: list[LocalizedString]
    lat: float
    lon: float
    address: str
    is_virtual_station: bool
    capacity: int
    vehicle_docks_capacity: list[VehicleDocks]
