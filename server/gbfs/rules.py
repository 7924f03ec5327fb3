"""Pure GBFS 3.0 logic: what a kiosk looks like as a station, the fixed documents, and when a
built document may still be served. No I/O; the references are to MobilityData/gbfs v3.0
gbfs.md (sections named as in the spec)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any, Final, NamedTuple

from server.core.money import DEPOSIT, FEN_PER_YUAN
from server.gbfs.schemas import LocalizedString, Station
from server.rentals.rules import FREE_WINDOW

VERSION: Final = "3.0"
#: Languages of every localized string (system_information.languages), first = default.
LANGUAGES: Final = ("zh-CN", "en")
UMBRELLA_TYPE_ID: Final = "umbrella"
PLAN_ID: Final = "free-7-days-deposit-30"

#: The files this system publishes, in the order gbfs.json lists them (gbfs.md "Files").
FEED_NAMES: Final = (
    "gbfs",
    "system_information",
    "vehicle_types",
    "station_information",
    "station_status",
    "system_pricing_plans",
)


def localized(zh: str, en: str) -> list[LocalizedString]:
    """A GBFS Localized String array: one entry per language of LANGUAGES."""
    return [{"text": zh, "language": "zh-CN"}, {"text": en, "language": "en"}]


def same_in_every_language(text: str) -> list[LocalizedString]:
    """A registry value with one spelling (a kiosk's own name, a proper noun), given under
    each language so that a consumer picking by language always finds it."""
    return [{"text": text, "language": lang} for lang in LANGUAGES]


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC, whole seconds (gbfs.md "Field Types": Timestamp)."""
    if moment.tzinfo is not UTC:  # the database layer already hands back UTC
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="seconds")


def stamp(now: datetime) -> datetime:
    """A document's `last_updated`: `now` cut to whole seconds. Taken *before* the rows are
    read, so the data is at least as new as the document says."""
    return now.astimezone(UTC).replace(microsecond=0)


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def feed_json(last_updated: datetime, ttl_s: int, data_json: str) -> str:
    """A GBFS 3.0 file: the header every file has (gbfs.md "Output Format") around `data`,
    already serialised (station_status is written as JSON text directly, see below)."""
    header = to_json({"last_updated": rfc3339(last_updated), "ttl": ttl_s, "version": VERSION})
    return f'{header[:-1]},"data":{data_json}}}'


# ------------------------------------------------------------------ freshness


def age_s(last_updated_epoch_s: int, now_epoch_s: float) -> float:
    return now_epoch_s - last_updated_epoch_s


def is_fresh(last_updated_epoch_s: int, ttl_s: int, now_epoch_s: float) -> bool:
    """A built document may be served while `0 <= now - last_updated < ttl`. A document
    from the future (a clock moved back) is not trusted either."""
    age = age_s(last_updated_epoch_s, now_epoch_s)
    return 0 <= age < ttl_s


def max_age_s(last_updated_epoch_s: int, ttl_s: int, now_epoch_s: float) -> int:
    """Cache-Control max-age: the whole seconds left of the ttl, rounded down, so that no
    HTTP cache keeps the document past last_updated + ttl."""
    left = ttl_s - age_s(last_updated_epoch_s, now_epoch_s)
    return max(0, int(left))


# ------------------------------------------------------------------ stations


class KioskAvailability(NamedTuple):
    """One kiosk's slots as the registry and the bridge know them (a NamedTuple: 10,000 of
    them are made on every station_status build)."""

    kiosk_id: str
    online: bool
    #: Last time the kiosk was heard from, or its registration for one never seen.
    last_reported: datetime
    umbrellas: int  # healthy slots holding an umbrella
    empty: int  # healthy empty slots
    faulty_with_umbrella: int  # faulty slots holding a (jammed) umbrella
    faulty_empty: int  # faulty slots, empty or contents unknown


def in_service(k: KioskAvailability) -> bool:
    """Whether the kiosk rents and takes returns now: it is online (the cloud cannot unlock a
    slot of an offline kiosk, and a return there is not seen until it reconnects) and at
    least one slot works. gbfs.md station_status: "Even if the station is empty, if it would
    otherwise allow rentals, this value MUST be true" (and the same for a full station and
    returns), so an empty or a full kiosk that works stays in service; the counts say it is
    empty or full."""
    return k.online and k.umbrellas + k.empty > 0


_TRUE_FALSE: Final = ("false", "true")

#: One station of station_status.json. Written as text rather than dicts + json.dumps: the
#: feed has 10,000 stations and this is most of its build time (bench/gbfs_station_status).
_STATION_STATUS: Final = (
    '{"station_id":%s,'
    '"num_vehicles_available":%d,'
    '"vehicle_types_available":[{"vehicle_type_id":"' + UMBRELLA_TYPE_ID + '","count":%d}],'
    '"num_vehicles_disabled":%d,'
    '"num_docks_available":%d,'
    '"vehicle_docks_available":[{"vehicle_type_ids":["' + UMBRELLA_TYPE_ID + '"],"count":%d}],'
    '"num_docks_disabled":%d,'
    '"is_installed":true,'
    '"is_renting":%s,'
    '"is_returning":%s,'
    '"last_reported":"%s"}'
)


def station_status_json(k: KioskAvailability, last_reported: str) -> str:
    """gbfs.md station_status.json, one station, as JSON text; `last_reported` is
    `rfc3339(k.last_reported)`.

    - `num_vehicles_available`: umbrellas in healthy slots; one jammed in a faulty slot cannot
      be rented and counts in `num_vehicles_disabled`.
    - `num_docks_available`: healthy empty slots; `num_docks_disabled`: faulty slots that hold
      no umbrella ("empty but disabled docks").
    - `is_renting`, `is_returning`: `in_service` (offline or no working slot: both false).
    - `last_reported`: always present (the registration time for a kiosk never seen).
    """
    serving = _TRUE_FALSE[in_service(k)]
    return _STATION_STATUS % (
        encode_basestring_ascii(k.kiosk_id),
        k.umbrellas,
        k.umbrellas,
        k.faulty_with_umbrella,
        k.empty,
        k.empty,
        k.faulty_empty,
        serving,
        serving,
        last_reported,
    )


def station_status_data_json(kiosks: Iterable[KioskAvailability]) -> str:
    """station_status's `data` for the whole fleet, as JSON text.

    Timestamps are formatted once per distinct second: kiosks heartbeat every minute, so a
    fleet's `last_reported` values fall on a few hundred seconds, and formatting was a third
    of the build time."""
    formatted: dict[int, str] = {}
    parts = []
    for k in kiosks:
        second = int(k.last_reported.timestamp())
        text = formatted.get(second)
        if text is None:
            text = formatted[second] = rfc3339(k.last_reported)
        parts.append(station_status_json(k, text))
    return '{"stations":[' + ",".join(parts) + "]}"


@dataclass(frozen=True, slots=True)
class KioskSite:
    kiosk_id: str
    name: str
    lat: float
    lon: float
    address: str
    slot_count: int


def station_information(k: KioskSite) -> Station:
    """gbfs.md station_information.json: a kiosk is a docking station whose docks are its
    slots (capacity = slot count, 22 by default) and that takes only umbrellas."""
    return {
        "station_id": k.kiosk_id,
        "name": same_in_every_language(k.name),
        "lat": k.lat,
        "lon": k.lon,
        "address": k.address,
        "is_virtual_station": False,
        "capacity": k.slot_count,
        "vehicle_docks_capacity": [{"vehicle_type_ids": [UMBRELLA_TYPE_ID], "count": k.slot_count}],
    }


# ------------------------------------------------------------------ fixed documents


@dataclass(frozen=True, slots=True)
class SystemFacts:
    system_id: str
    name_zh: str
    name_en: str
    operator_zh: str
    operator_en: str
    feed_contact_email: str
    timezone: str


def system_information(facts: SystemFacts) -> dict[str, Any]:
    """gbfs.md system_information.json. Kiosks are usable around the clock (the venue's
    opening hours only limit when ads are sold), hence "24/7"."""
    return {
        "system_id": facts.system_id,
        "languages": list(LANGUAGES),
        "name": localized(facts.name_zh, facts.name_en),
        "operator": localized(facts.operator_zh, facts.operator_en),
        "opening_hours": "24/7",
        "feed_contact_email": facts.feed_contact_email,
        "timezone": facts.timezone,
    }


def vehicle_types() -> dict[str, Any]:
    """gbfs.md vehicle_types.json: one type, the umbrella. Not a vehicle one rides: form
    factor `other`, `human` propulsion (so no `max_range_meters`), returned to any kiosk."""
    return {
        "vehicle_types": [
            {
                "vehicle_type_id": UMBRELLA_TYPE_ID,
                "form_factor": "other",
                "propulsion_type": "human",
                "name": localized("雨伞", "Umbrella"),
                "description": localized(
                    "共享雨伞:扫码取伞,可归还到任意站点的空槽。",
                    "Shared umbrella: scan the kiosk's code to take one, return it to an empty "
                    "slot at any kiosk.",
                ),
                "return_constraint": "any_station",
                "default_pricing_plan_id": PLAN_ID,
                "pricing_plan_ids": [PLAN_ID],
            }
        ]
    }


def system_pricing_plans() -> dict[str, Any]:
    """gbfs.md system_pricing_plans.json. Renting is free for the free window (SPEC §2); the
    deposit is not a price, so it is described in words: held while renting, taken when the
    umbrella is not back within the window (the umbrella is then the rider's)."""
    days = FREE_WINDOW.days
    deposit_yuan, rest = divmod(int(DEPOSIT), FEN_PER_YUAN)
    deposit = f"{deposit_yuan}" if rest == 0 else f"{deposit_yuan}.{rest:02d}"
    return {
        "plans": [
            {
                "plan_id": PLAN_ID,
                "name": localized(f"{days} 天内免费", f"Free for {days} days"),
                "currency": "CNY",
                "price": 0,
                "is_taxable": False,
                "description": localized(
                    f"借伞后的前 {days} 天免费,从伞离开伞槽时起算。借伞需先通过微信支付缴纳 "
                    f"{deposit} 元押金,押金由微信支付保管;在 {days} 天内把伞还到任意站点的"
                    f"空槽即不收取任何费用,没有借伞时可随时申请退还押金。超过 {days} 天未归还,"
                    f"{deposit} 元押金将被自动扣除,雨伞归您所有。",
                    f"Free for the first {days} days, counted from when the umbrella leaves the "
                    f"slot. Renting needs a {deposit}-yuan deposit paid through WeChat Pay, "
                    f"which holds it. Return the umbrella to an empty slot at any kiosk within "
                    f"{days} days and nothing is charged; the deposit can be withdrawn whenever "
                    f"no umbrella is out. If the umbrella is not back within {days} days, the "
                    f"{deposit}-yuan deposit is forfeited automatically and the umbrella is "
                    f"yours to keep.",
                ),
            }
        ]
    }


def discovery(base_url: str, names: Sequence[str] = FEED_NAMES) -> dict[str, Any]:
    """gbfs.md gbfs.json: every published file but itself, with absolute URLs."""
    root = base_url.rstrip("/")
    return {
        "feeds": [
            {"name": name, "url": f"{root}/gbfs/v3/{name}.json"} for name in names if name != "gbfs"
        ]
    }
