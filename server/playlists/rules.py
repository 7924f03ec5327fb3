"""Pure playlist rules. No I/O.

Spot codes: the `creative_id` text a playlist spot carries (firmware_protocol SPEC §4.6)
and every Play echoes back as `cr`. It names the booking as well as the creative, so a
play is attributed without looking anything up, even when one creative runs in two
bookings of the same advertiser:

    b<booking>-c<creative>       a booked spot
    b<booking>-c<creative>-mg    a make-good spot (owed for spots lost to an offline kiosk)
    house-<name>                 house content (unsold spot), never billed
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPOT_RE = re.compile(r"^b(\d{1,18})-c(\d{1,18})(-mg)?$")


@dataclass(frozen=True, slots=True)
class SpotRef:
    booking_id: int
    creative_id: int
    make_good: bool


def spot_code(booking_id: int, creative_id: int, *, make_good: bool = False) -> str:
    return f"b{booking_id}-c{creative_id}{'-mg' if make_good else ''}"


def house_code(name: str) -> str:
    return f"house-{name}"


def parse_spot_code(code: str) -> SpotRef | None:
    """The booking and creative of a spot code; None for house content or anything else
    (a play of an unknown code is stored but billed to nobody)."""
    m = _SPOT_RE.match(code)
    if m is None:
        return None
    return SpotRef(int(m.group(1)), int(m.group(2)), m.group(3) is not None)
