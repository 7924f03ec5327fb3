"""Pure kiosk rules: venue taxonomy, ids, geometry. No I/O."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from firmware_protocol.topics import KIOSK_ID_RE

#: Same as firmware_protocol.topics.KIOSK_ID_RE, spelled for pydantic's (Rust) regex engine,
#: where `$` already means the very end of the string.
KIOSK_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
#: A kiosk clock further off than this is flagged (firmware_protocol SPEC §8).
CLOCK_OFF_MS = 120_000
DEFAULT_TIMEZONE = "Asia/Shanghai"
#: SPEC §1: a kiosk has 22 slots.
DEFAULT_SLOT_COUNT = 22
MAX_SLOT_COUNT = 64
EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)


@dataclass(frozen=True)
class VenueType:
    """One OpenOOH venue taxonomy v1.1 category (github.com/openooh/venue-taxonomy).

    `id` is the taxonomy's `enumeration_id` as a string, the value OpenRTB 2.6 DOOH bid
    requests carry, so ad targeting (SPEC §4) can speak to programmatic buyers unchanged.
    """

    id: str
    key: str
    taxonomy_name: str
    label_zh: str


#: The venues of SPEC §1 mapped to their closest OpenOOH category. A scenic spot or park is
#: "Leisure > Recreational Locations" (801); a metro exit is "Transit > Subway" (105).
VENUE_TYPES: dict[str, VenueType] = {
    v.id: v
    for v in (
        VenueType("105", "metro_exit", "transit.subway", "地铁口"),
        VenueType("303", "bus_stop", "outdoor.bus_shelters", "公交站"),
        VenueType("205", "mall", "retail.mall", "商场"),
        VenueType("801", "scenic_spot", "leisure.recreational", "景区/公园"),
        VenueType("1001", "bank", "financial.banks", "银行"),
        VenueType("807", "hotel", "leisure.hotels", "酒店"),
    )
}
_BY_KEY = {v.key: v.id for v in VENUE_TYPES.values()}


def resolve_venue_type(value: str) -> str:
    """Return the OpenOOH id for an id ("105") or one of our keys ("metro_exit")."""
    value = value.strip()
    if value in VENUE_TYPES:
        return value
    if value in _BY_KEY:
        return _BY_KEY[value]
    allowed = ", ".join(f"{v.id} ({v.key})" for v in VENUE_TYPES.values())
    raise ValueError(f"unknown venue_type {value!r}; use an OpenOOH id: {allowed}")


def valid_kiosk_id(kiosk_id: str) -> bool:
    return bool(KIOSK_ID_RE.match(kiosk_id))


def new_kiosk_id(rng: random.Random | None = None) -> str:
    """`K` + 6 digits: short enough to print under the QR code and type into a support chat."""
    r = rng or random.SystemRandom()
    return f"K{r.randrange(1_000_000):06d}"


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class BoundingBox:
    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float

    def contains(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon


def bounding_box(lat: float, lon: float, radius_m: float) -> BoundingBox:
    """The lat/lon box that contains every point within `radius_m` (a cheap SQL prefilter
    on the (lat, lon) index; the exact distance is haversine). Ignores the antimeridian,
    which no Chinese city crosses."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    cos_lat = math.cos(math.radians(lat))
    dlon = 180.0 if cos_lat < 1e-9 else min(180.0, dlat / cos_lat)
    return BoundingBox(
        min_lat=max(-90.0, lat - dlat),
        min_lon=max(-180.0, lon - dlon),
        max_lat=min(90.0, lat + dlat),
        max_lon=min(180.0, lon + dlon),
    )


def planar_scale(lat: float) -> float:
    """Longitude-degree to latitude-degree ratio at `lat`: lets SQL order candidates by
    (dlat² + (dlon·k)²) without trigonometry (SQLite has none by default)."""
    return math.cos(math.radians(lat))


def scatter_around(
    lat: float, lon: float, count: int, radius_m: float, rng: random.Random
) -> list[tuple[float, float]]:
    """`count` points uniformly spread over a disc (for seeding a demo fleet)."""
    points = []
    for _ in range(count):
        r = radius_m * math.sqrt(rng.random())
        theta = rng.random() * 2 * math.pi
        dlat = math.degrees(r * math.cos(theta) / EARTH_RADIUS_M)
        dlon = math.degrees(r * math.sin(theta) / EARTH_RADIUS_M) / max(planar_scale(lat), 1e-9)
        points.append((round(lat + dlat, 6), round(lon + dlon, 6)))
    return points
