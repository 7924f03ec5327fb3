"""The public GBFS 3.0 feed over HTTP, on SQLite and PostgreSQL (issue 5, SPEC §5).

Every file is checked against MobilityData's official GBFS 3.0 JSON schemas, shipped under
tests/data/gbfs-json-schema/v3.0/ (source, commits and licence in the README there).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from sqlalchemy import update

from server.app import create_app
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.http import AppServices
from server.core.shared_state import RedisSharedState
from server.gbfs import repository as gbfs_repo
from server.models import Kiosk, KioskState, Slot, SlotStatus

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "gbfs-json-schema" / "v3.0"
FEEDS = (
    "gbfs",
    "system_information",
    "station_information",
    "station_status",
    "vehicle_types",
    "system_pricing_plans",
)
HANGZHOU = (30.2741, 120.1551)
SEEN_AT = datetime(2025, 6, 1, 8, 0, 5, tzinfo=UTC)

# --------------------------------------------------------------------------- schema checks

#: RFC 3339 date-time (the GBFS 3.0 Timestamp type). jsonschema checks "date-time" and "uri"
#: only with optional packages installed; these checkers make both formats always checked.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@FORMATS.checks("uri", raises=ValueError)
def _is_absolute_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"{value!r} is not an absolute URI")
    return True


def _validator(feed: str) -> Draft7Validator:
    schema = json.loads((SCHEMAS / f"{feed}.json").read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, format_checker=FORMATS)


def _assert_valid(feed: str, document: Any) -> None:
    errors = sorted(_validator(feed).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, gbfs_public_base_url="https://gbfs.umbrella.example.cn/")


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db)) as c:
        yield c


def _partner(client: TestClient) -> int:
    r = client.post("/api/v1/partners", json={"name": "Hangzhou Ops", "region": "Hangzhou"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _kiosk(client: TestClient, partner_id: int, kiosk_id: str, **over: Any) -> str:
    body: dict[str, Any] = {
        "id": kiosk_id,
        "name": "西湖文化广场 B 口",
        "partner_id": partner_id,
        "lat": HANGZHOU[0],
        "lon": HANGZHOU[1],
        "address": "Zhongshan N Rd, Hangzhou",
        "venue_type": "105",
    }
    body.update(over)
    r = client.post("/api/v1/kiosks", json=body)
    assert r.status_code == 201, r.text
    return kiosk_id


def _set_slots(db: Database, kiosk_id: str, statuses: dict[int, tuple[SlotStatus, bool]]) -> None:
    """slot_no -> (status, holds an umbrella); a faulty slot may hold a jammed umbrella."""
    with db.transaction() as s:
        for slot_no, (status, holds) in statuses.items():
            s.execute(
                update(Slot)
                .where(Slot.kiosk_id == kiosk_id, Slot.slot_no == slot_no)
                .values(
                    status=status,
                    tag=f"E200{slot_no:04X}{kiosk_id}" if holds else None,
                    fault_code=1 if status == SlotStatus.FAULT else None,
                )
            )


UMBRELLA = (SlotStatus.UMBRELLA, True)
EMPTY = (SlotStatus.EMPTY, False)
JAMMED = (SlotStatus.FAULT, True)
BROKEN = (SlotStatus.FAULT, False)


def _set_online(db: Database, kiosk_id: str, online: bool) -> None:
    with db.transaction() as s:
        s.execute(
            update(KioskState)
            .where(KioskState.kiosk_id == kiosk_id)
            .values(online=online, last_seen_at=SEEN_AT)
        )


def _get(client: TestClient, feed: str) -> dict[str, Any]:
    r = client.get(f"/gbfs/v3/{feed}.json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return dict(r.json())


def _stations(client: TestClient) -> dict[str, dict[str, Any]]:
    return {s["station_id"]: s for s in _get(client, "station_status")["data"]["stations"]}


def _fleet(client: TestClient, db: Database) -> int:
    """Three kiosks: online and stocked with faults, offline and stocked, never seen."""
    pid = _partner(client)
    _kiosk(client, pid, "K000001")
    _kiosk(client, pid, "K000002", name="Wulin Square", lat=30.2755, lon=120.1651)
    _kiosk(client, pid, "K000003", name="Hangzhou East Railway Station")
    _set_slots(db, "K000001", {1: UMBRELLA, 2: UMBRELLA, 3: UMBRELLA, 4: JAMMED, 5: BROKEN})
    _set_online(db, "K000001", True)
    _set_slots(db, "K000002", {n: UMBRELLA for n in range(1, 11)})
    _set_online(db, "K000002", False)
    return pid


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("feed", FEEDS)
def test_every_feed_validates_against_the_official_gbfs_3_0_schema(
    client: TestClient, db: Database, feed: str
) -> None:
    _fleet(client, db)

    document = _get(client, feed)

    _assert_valid(feed, document)
    assert document["version"] == "3.0"
    assert isinstance(document["ttl"], int)


def test_the_shipped_schemas_reject_a_station_without_last_reported(
    client: TestClient, db: Database
) -> None:
    _fleet(client, db)
    document = _get(client, "station_status")
    del document["data"]["stations"][0]["last_reported"]

    with pytest.raises(ValidationError, match="last_reported"):
        _validator("station_status").validate(document)


def test_the_date_time_format_is_enforced_by_the_schema_check() -> None:
    document = {"last_updated": "2025-06-01 08:00", "ttl": 0, "version": "3.0", "data": {}}

    with pytest.raises(ValidationError, match="is not a 'date-time'"):
        _validator("vehicle_types").validate(document)


# --------------------------------------------------------------------------- discovery


def test_discovery_lists_every_feed_by_absolute_url_under_the_public_base_url(
    client: TestClient, db: Database
) -> None:
    _fleet(client, db)

    feeds = {f["name"]: f["url"] for f in _get(client, "gbfs")["data"]["feeds"]}

    assert set(feeds) == set(FEEDS) - {"gbfs"}
    for name, url in feeds.items():
        assert url == f"https://gbfs.umbrella.example.cn/gbfs/v3/{name}.json"
        assert client.get(urlsplit(url).path).status_code == 200


def test_discovery_falls_back_to_the_api_address_not_the_request_host(
    db: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, api_host="10.0.0.7", api_port=8100)
    with TestClient(create_app(settings, db=db), base_url="http://attacker.example") as c:
        urls = [f["url"] for f in _get(c, "gbfs")["data"]["feeds"]]

    assert all(u.startswith("http://10.0.0.7:8100/gbfs/v3/") for u in urls)


def test_an_unknown_feed_name_is_a_404(client: TestClient) -> None:
    r = client.get("/gbfs/v3/free_bike_status.json")

    assert r.status_code == 404
    assert r.json()["error"] == "unknown_feed"


def test_the_feed_needs_no_credentials_even_when_the_operator_api_does(
    db: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, operator_token="op-secret")
    with TestClient(create_app(settings, db=db)) as c:
        assert c.post("/api/v1/partners", json={"name": "P", "region": "R"}).status_code == 401
        for feed in FEEDS:
            assert c.get(f"/gbfs/v3/{feed}.json").status_code == 200


# --------------------------------------------------------------------------- stations


def test_station_information_lists_every_kiosk_with_its_slots_as_capacity(
    client: TestClient, db: Database
) -> None:
    pid = _fleet(client, db)
    _kiosk(client, pid, "K000004", slot_count=12)

    stations = {s["station_id"]: s for s in _get(client, "station_information")["data"]["stations"]}

    assert sorted(stations) == ["K000001", "K000002", "K000003", "K000004"]
    first = stations["K000001"]
    assert first["name"] == [
        {"text": "西湖文化广场 B 口", "language": "zh-CN"},
        {"text": "西湖文化广场 B 口", "language": "en"},
    ]
    assert (first["lat"], first["lon"]) == HANGZHOU
    assert first["address"] == "Zhongshan N Rd, Hangzhou"
    assert first["capacity"] == 22
    assert first["is_virtual_station"] is False
    assert stations["K000004"]["capacity"] == 12
    assert stations["K000004"]["vehicle_docks_capacity"] == [
        {"vehicle_type_ids": ["umbrella"], "count": 12}
    ]


def test_an_online_kiosk_reports_umbrellas_and_free_slots_and_rents(
    client: TestClient, db: Database
) -> None:
    pid = _partner(client)
    _kiosk(client, pid, "K000001")
    _set_slots(db, "K000001", {n: UMBRELLA for n in range(1, 8)})
    _set_online(db, "K000001", True)

    station = _stations(client)["K000001"]

    assert station["num_vehicles_available"] == 7
    assert station["vehicle_types_available"] == [{"vehicle_type_id": "umbrella", "count": 7}]
    assert station["num_docks_available"] == 15
    assert station["vehicle_docks_available"] == [{"vehicle_type_ids": ["umbrella"], "count": 15}]
    assert station["num_vehicles_disabled"] == 0
    assert station["num_docks_disabled"] == 0
    assert station["is_installed"] is True
    assert station["is_renting"] is True
    assert station["is_returning"] is True
    assert station["last_reported"] == "2025-06-01T08:00:05+00:00"


def test_an_offline_kiosk_stays_listed_with_renting_and_returning_off(
    client: TestClient, db: Database
) -> None:
    _fleet(client, db)

    station = _stations(client)["K000002"]

    assert station["is_renting"] is False
    assert station["is_returning"] is False
    assert station["is_installed"] is True
    assert station["num_vehicles_available"] == 10
    assert station["num_docks_available"] == 12
    assert station["last_reported"] == "2025-06-01T08:00:05+00:00"
    info_ids = [s["station_id"] for s in _get(client, "station_information")["data"]["stations"]]
    assert "K000002" in info_ids


def test_faulty_slots_count_as_disabled_vehicles_or_docks_not_as_available(
    client: TestClient, db: Database
) -> None:
    _fleet(client, db)  # K000001: 3 umbrellas, 1 jammed with its umbrella, 1 broken and empty

    station = _stations(client)["K000001"]

    assert station["num_vehicles_available"] == 3
    assert station["num_vehicles_disabled"] == 1
    assert station["num_docks_available"] == 17
    assert station["num_docks_disabled"] == 1
    assert (
        station["num_vehicles_available"]
        + station["num_vehicles_disabled"]
        + station["num_docks_available"]
        + station["num_docks_disabled"]
    ) == 22
    assert station["is_renting"] is True
    assert station["is_returning"] is True


def test_a_kiosk_whose_every_slot_is_faulty_neither_rents_nor_takes_returns(
    client: TestClient, db: Database
) -> None:
    pid = _partner(client)
    _kiosk(client, pid, "K000001")
    _set_slots(db, "K000001", {n: JAMMED if n <= 5 else BROKEN for n in range(1, 23)})
    _set_online(db, "K000001", True)

    station = _stations(client)["K000001"]

    assert station["num_vehicles_available"] == 0
    assert station["num_docks_available"] == 0
    assert station["num_vehicles_disabled"] == 5
    assert station["num_docks_disabled"] == 17
    assert station["is_renting"] is False
    assert station["is_returning"] is False


def test_a_working_kiosk_that_is_empty_or_full_keeps_renting_and_returning_on(
    client: TestClient, db: Database
) -> None:
    """GBFS 3.0 station_status: "Even if the station is empty, if it would otherwise allow
    rentals, this value MUST be true" (and likewise a full station keeps is_returning)."""
    pid = _partner(client)
    _kiosk(client, pid, "K000001")  # every slot empty
    _kiosk(client, pid, "K000002")
    _set_slots(db, "K000002", {n: UMBRELLA for n in range(1, 23)})
    _set_online(db, "K000001", True)
    _set_online(db, "K000002", True)

    stations = _stations(client)

    assert stations["K000001"]["num_vehicles_available"] == 0
    assert stations["K000001"]["is_renting"] is True
    assert stations["K000002"]["num_docks_available"] == 0
    assert stations["K000002"]["is_returning"] is True


def test_last_reported_is_the_registration_time_for_a_kiosk_never_seen(
    client: TestClient, db: Database
) -> None:
    _fleet(client, db)
    with db.transaction() as s:
        kiosk = s.get(Kiosk, "K000003")
        assert kiosk is not None
        registered = kiosk.created_at

    station = _stations(client)["K000003"]

    assert station["last_reported"] == registered.astimezone(UTC).replace(microsecond=0).isoformat()
    assert station["is_renting"] is False  # never connected, so offline


def test_station_status_counts_agree_with_the_kiosk_registry(
    client: TestClient, db: Database
) -> None:
    _fleet(client, db)
    stations = _stations(client)

    for kiosk_id, station in stations.items():
        detail = client.get(f"/api/v1/kiosks/{kiosk_id}").json()
        assert station["num_vehicles_available"] == detail["umbrellas"]
        assert station["num_docks_available"] == detail["free_slots"]
        assert (
            station["num_vehicles_disabled"] + station["num_docks_disabled"]
            == detail["faulty_slots"]
        )
        assert (station["is_renting"] and detail["online"]) == station["is_renting"]


# --------------------------------------------------------------------------- fixed files


def test_the_umbrella_is_the_one_vehicle_type_returned_to_any_station(
    client: TestClient,
) -> None:
    (umbrella,) = _get(client, "vehicle_types")["data"]["vehicle_types"]

    assert umbrella["vehicle_type_id"] == "umbrella"
    assert umbrella["form_factor"] == "other"
    assert umbrella["propulsion_type"] == "human"
    assert umbrella["return_constraint"] == "any_station"
    assert {n["language"] for n in umbrella["name"]} == {"zh-CN", "en"}
    plans = _get(client, "system_pricing_plans")["data"]["plans"]
    assert umbrella["default_pricing_plan_id"] in {p["plan_id"] for p in plans}


def test_the_pricing_plan_is_free_and_describes_the_30_yuan_deposit_and_7_days(
    client: TestClient,
) -> None:
    (plan,) = _get(client, "system_pricing_plans")["data"]["plans"]

    assert plan["currency"] == "CNY"
    assert plan["price"] == 0
    assert plan["is_taxable"] is False
    text = {d["language"]: d["text"] for d in plan["description"]}
    assert "30-yuan deposit" in text["en"]
    assert "within 7 days" in text["en"]
    assert "forfeited" in text["en"]
    assert "30 元押金" in text["zh-CN"]
    assert "超过 7 天未归还" in text["zh-CN"]


def test_system_information_declares_both_languages_and_the_shanghai_time_zone(
    client: TestClient,
) -> None:
    data = _get(client, "system_information")["data"]

    assert data["languages"] == ["zh-CN", "en"]
    assert data["timezone"] == "Asia/Shanghai"
    assert {n["language"] for n in data["name"]} == {"zh-CN", "en"}


# --------------------------------------------------------------------------- cache and ttl


def _age_s(document: dict[str, Any]) -> float:
    return (clock.now() - datetime.fromisoformat(document["last_updated"])).total_seconds()


def test_within_the_ttl_the_cached_station_status_is_served_unchanged(
    client: TestClient, db: Database, settings: Settings
) -> None:
    _fleet(client, db)
    first = client.get("/gbfs/v3/station_status.json")
    _set_slots(db, "K000001", {6: UMBRELLA, 7: UMBRELLA})

    clock.advance(timedelta(seconds=settings.gbfs_status_ttl_s - 3))
    again = client.get("/gbfs/v3/station_status.json")

    assert again.content == first.content
    assert again.json()["last_updated"] == first.json()["last_updated"]
    station = {s["station_id"]: s for s in again.json()["data"]["stations"]}["K000001"]
    assert station["num_vehicles_available"] == 3
    assert _age_s(again.json()) < settings.gbfs_status_ttl_s


def test_a_kiosk_change_shows_up_once_the_ttl_has_passed(
    client: TestClient, db: Database, settings: Settings
) -> None:
    _fleet(client, db)
    first = _get(client, "station_status")
    _set_slots(db, "K000001", {6: UMBRELLA, 7: UMBRELLA})
    _set_online(db, "K000002", True)

    clock.advance(timedelta(seconds=settings.gbfs_status_ttl_s))
    after = _get(client, "station_status")

    assert after["last_updated"] > first["last_updated"]
    stations = {s["station_id"]: s for s in after["data"]["stations"]}
    assert stations["K000001"]["num_vehicles_available"] == 5
    assert stations["K000002"]["is_renting"] is True


def test_no_document_is_ever_served_older_than_its_ttl(
    client: TestClient, db: Database, settings: Settings
) -> None:
    _fleet(client, db)
    served: set[str] = set()
    for _ in range(40):  # 40 requests 7 s apart: 280 s, ten ttl periods of station_status
        for feed in ("station_status", "station_information"):
            r = client.get(f"/gbfs/v3/{feed}.json")
            document = r.json()
            ttl = document["ttl"]
            age = _age_s(document)
            max_age = int(r.headers["cache-control"].removeprefix("public, max-age="))
            assert 0 <= age < ttl, (feed, age, ttl)
            # max-age is whole seconds left when the server answered; `age` is measured a
            # moment later here, so allow that moment (well under a second).
            assert age + max_age <= ttl + 0.5, (feed, age, max_age, ttl)
            served.add(f"{feed}@{document['last_updated']}")
        clock.advance(timedelta(seconds=7))

    # Rebuilt at the first request past the ttl: every 35 s here, so 8 documents in 280 s.
    assert len([s for s in served if s.startswith("station_status@")]) >= 7


def test_cache_control_max_age_is_the_ttl_left(
    client: TestClient, db: Database, settings: Settings
) -> None:
    _fleet(client, db)
    ttl = settings.gbfs_status_ttl_s
    fresh = client.get("/gbfs/v3/station_status.json")
    clock.advance(timedelta(seconds=ttl - 10))
    later = client.get("/gbfs/v3/station_status.json")

    fresh_max_age = int(fresh.headers["cache-control"].removeprefix("public, max-age="))
    later_max_age = int(later.headers["cache-control"].removeprefix("public, max-age="))
    assert ttl - 2 <= fresh_max_age <= ttl
    assert later.json()["last_updated"] == fresh.json()["last_updated"]
    assert 8 <= later_max_age <= 10


def test_concurrent_requests_for_an_expired_feed_build_it_once(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fleet(client, db)
    builds = 0
    real = gbfs_repo.availability

    def counting(session: Any) -> Any:
        nonlocal builds
        builds += 1
        return real(session)

    monkeypatch.setattr(gbfs_repo, "availability", counting)
    start = threading.Barrier(8)
    bodies: list[bytes] = []

    def fetch() -> None:
        start.wait()
        bodies.append(client.get("/gbfs/v3/station_status.json").content)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert builds == 1
    assert len(bodies) == 8
    assert len(set(bodies)) == 1


def test_api_processes_sharing_redis_share_the_cache_and_its_ttl(
    db: Database, tmp_path: Path, redis_url: str
) -> None:
    settings = Settings(data_dir=tmp_path)

    states = [RedisSharedState(redis_url), RedisSharedState(redis_url)]

    def app(state: RedisSharedState) -> TestClient:
        return TestClient(create_app(services=AppServices(settings, db, shared_state=state)))

    with app(states[0]) as first, app(states[1]) as second:
        _fleet(first, db)
        built = first.get("/gbfs/v3/station_status.json")
        _set_slots(db, "K000001", {6: UMBRELLA})

        from_cache = second.get("/gbfs/v3/station_status.json")
        clock.advance(timedelta(seconds=settings.gbfs_status_ttl_s))
        rebuilt = second.get("/gbfs/v3/station_status.json")
    for state in states:
        state.close()

    assert from_cache.content == built.content
    stations = {s["station_id"]: s for s in rebuilt.json()["data"]["stations"]}
    assert stations["K000001"]["num_vehicles_available"] == 4
    assert rebuilt.json()["last_updated"] > built.json()["last_updated"]
