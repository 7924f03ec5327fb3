"""Kiosk registry and availability over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from server.app import create_app
from server.broker.credentials import verify_password
from server.config import Settings
from server.core.db import Database
from server.core.http import AppServices
from server.kiosks import service as kiosks
from server.models import Kiosk, KioskState, Partner, Slot, SlotStatus

HANGZHOU = (30.2741, 120.1551)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db)) as c:
        yield c


def _partner(client: TestClient, name: str = "Hangzhou Ops", region: str = "Hangzhou") -> int:
    r = client.post("/api/v1/partners", json={"name": name, "region": region})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _kiosk(client: TestClient, partner_id: int, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "West Lake Culture Square exit B",
        "partner_id": partner_id,
        "lat": HANGZHOU[0],
        "lon": HANGZHOU[1],
        "address": "Zhongshan N Rd, Hangzhou",
        "venue_type": "105",
    }
    body.update(over)
    r = client.post("/api/v1/kiosks", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _set_slots(db: Database, kiosk_id: str, statuses: dict[int, SlotStatus]) -> None:
    with db.transaction() as s:
        for slot_no, st in statuses.items():
            s.execute(
                update(Slot)
                .where(Slot.kiosk_id == kiosk_id, Slot.slot_no == slot_no)
                .values(
                    status=st,
                    tag=f"E200{slot_no:04X}" if st == SlotStatus.UMBRELLA else None,
                    fault_code=7 if st == SlotStatus.FAULT else None,
                    observed_at=datetime(2025, 6, 1, 8, 0, tzinfo=UTC),
                )
            )


def _set_online(db: Database, kiosk_id: str, online: bool = True) -> None:
    with db.transaction() as s:
        s.execute(
            update(KioskState)
            .where(KioskState.kiosk_id == kiosk_id)
            .values(
                online=online,
                firmware="1.4.2",
                signal_dbm=-71,
                last_seen_at=datetime(2025, 6, 1, 8, 0, 5, tzinfo=UTC),
            )
        )


def _count(db: Database, model: type[Any]) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_registering_a_kiosk_returns_its_mqtt_password_once_and_stores_only_a_hash(
    client: TestClient, db: Database
) -> None:
    pid = _partner(client)

    created = _kiosk(client, pid)

    assert re.fullmatch(r"K\d{6}", created["id"])
    assert created["mqtt_username"] == created["id"]
    with db.transaction() as s:
        kiosk = s.get(Kiosk, created["id"])
        assert kiosk is not None
        assert kiosk.mqtt_password_hash.startswith("$7$")
        assert verify_password(created["mqtt_password"], kiosk.mqtt_password_hash)
    detail = client.get(f"/api/v1/kiosks/{created['id']}").json()
    assert "mqtt_password" not in detail
    assert created["mqtt_password"] not in str(detail)


def test_a_new_kiosk_is_offline_with_22_empty_slots(client: TestClient) -> None:
    created = _kiosk(client, _partner(client), id="K000001")

    detail = client.get("/api/v1/kiosks/K000001").json()

    assert created["id"] == "K000001"
    assert detail["online"] is False
    assert detail["timezone"] == "Asia/Shanghai"
    assert detail["slot_count"] == 22
    assert [s["slot_no"] for s in detail["slots"]] == list(range(1, 23))
    assert {s["status"] for s in detail["slots"]} == {"empty"}
    assert (detail["umbrellas"], detail["free_slots"], detail["faulty_slots"]) == (0, 22, 0)


def test_kiosk_detail_shows_live_state_and_every_slot(client: TestClient, db: Database) -> None:
    _kiosk(client, _partner(client), id="K000002", venue_type="mall")
    _set_online(db, "K000002")
    _set_slots(db, "K000002", {1: SlotStatus.UMBRELLA, 2: SlotStatus.UMBRELLA, 5: SlotStatus.FAULT})

    detail = client.get("/api/v1/kiosks/K000002").json()

    assert detail["online"] is True
    assert detail["firmware"] == "1.4.2"
    assert detail["signal_dbm"] == -71
    assert detail["last_seen_at"].startswith("2025-06-01T08:00:05")
    assert detail["venue_type"] == "205"
    assert detail["venue_name"] == "retail.mall"
    assert (detail["umbrellas"], detail["free_slots"], detail["faulty_slots"]) == (2, 19, 1)
    slot1, slot5 = detail["slots"][0], detail["slots"][4]
    assert slot1 == {
        "slot_no": 1,
        "status": "umbrella",
        "tag": "E2000001",
        "fault_code": None,
        "observed_at": "2025-06-01T08:00:00Z",
    }
    assert (slot5["status"], slot5["fault_code"]) == ("fault", 7)


def test_unknown_kiosk_is_a_404_that_names_it(client: TestClient) -> None:
    r = client.get("/api/v1/kiosks/K999999")

    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    assert "K999999" in r.json()["message"]


def test_kiosk_list_filters_by_partner_venue_online_stock_and_bbox(
    client: TestClient, db: Database
) -> None:
    p1, p2 = _partner(client, "P1", "Hangzhou"), _partner(client, "P2", "Shanghai")
    _kiosk(client, p1, id="KA", venue_type="metro_exit")
    _kiosk(client, p1, id="KB", venue_type="bank", lat=30.30, lon=120.20)
    _kiosk(client, p2, id="KC", venue_type="hotel", lat=31.23, lon=121.47)
    _set_online(db, "KA")
    _set_online(db, "KC")
    _set_slots(db, "KA", {1: SlotStatus.UMBRELLA})
    _set_slots(db, "KC", {n: SlotStatus.UMBRELLA for n in range(1, 23)})

    def ids(**params: Any) -> list[str]:
        r = client.get("/api/v1/kiosks", params=params)
        assert r.status_code == 200, r.text
        return [k["id"] for k in r.json()["items"]]

    assert ids() == ["KA", "KB", "KC"]
    assert ids(partner_id=p1) == ["KA", "KB"]
    assert ids(venue_type="1001") == ["KB"]
    assert ids(venue_type="hotel") == ["KC"]
    assert ids(online=True) == ["KA", "KC"]
    assert ids(online=False) == ["KB"]
    assert ids(has_umbrellas=True) == ["KA", "KC"]
    assert ids(has_free_slots=False) == ["KC"]
    assert ids(has_umbrellas=True, has_free_slots=True) == ["KA"]
    assert ids(bbox="120.0,30.0,120.5,30.5") == ["KA", "KB"]


def test_kiosk_list_reports_counts_and_paginates(client: TestClient, db: Database) -> None:
    pid = _partner(client)
    for i in range(5):
        _kiosk(client, pid, id=f"K10000{i}")
    _set_slots(db, "K100001", {1: SlotStatus.UMBRELLA, 2: SlotStatus.FAULT})

    page = client.get("/api/v1/kiosks", params={"limit": 2, "offset": 1}).json()

    assert page["total"] == 5
    assert [k["id"] for k in page["items"]] == ["K100001", "K100002"]
    first = page["items"][0]
    assert (first["umbrellas"], first["free_slots"], first["faulty_slots"]) == (1, 20, 1)


def test_nearby_lists_online_kiosks_with_umbrellas_nearest_first(
    client: TestClient, db: Database
) -> None:
    pid = _partner(client)
    lat, lon = HANGZHOU
    _kiosk(client, pid, id="FAR", lat=lat + 0.006, lon=lon)  # ~667 m north
    _kiosk(client, pid, id="NEAR", lat=lat, lon=lon + 0.002)  # ~193 m east
    _kiosk(client, pid, id="EMPTY", lat=lat, lon=lon + 0.001)  # online, no umbrellas
    _kiosk(client, pid, id="OFFLINE", lat=lat + 0.0005, lon=lon)  # umbrellas, offline
    _kiosk(client, pid, id="OUTSIDE", lat=lat + 0.02, lon=lon)  # ~2.2 km
    for k in ("FAR", "NEAR", "EMPTY", "OUTSIDE"):
        _set_online(db, k)
    for k in ("FAR", "NEAR", "OFFLINE", "OUTSIDE"):
        _set_slots(db, k, {1: SlotStatus.UMBRELLA, 2: SlotStatus.UMBRELLA})

    r = client.get("/api/v1/kiosks/nearby", params={"lat": lat, "lon": lon, "radius_m": 1000})

    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [k["id"] for k in items] == ["NEAR", "FAR"]
    assert items[0]["distance_m"] == pytest.approx(193, abs=2)
    assert items[1]["distance_m"] == pytest.approx(667, abs=3)
    assert items[0]["umbrellas"] == 2


def test_nearby_free_slot_skips_full_kiosks_and_respects_the_limit(
    client: TestClient, db: Database
) -> None:
    pid = _partner(client)
    lat, lon = HANGZHOU
    for i, k in enumerate(("A", "B", "C", "FULL")):
        _kiosk(client, pid, id=k, lat=lat + 0.001 * (i + 1), lon=lon)
        _set_online(db, k)
    _set_slots(db, "FULL", {n: SlotStatus.UMBRELLA for n in range(1, 23)})

    r = client.get(
        "/api/v1/kiosks/nearby",
        params={"lat": lat, "lon": lon, "radius_m": 2000, "need": "free_slot", "limit": 2},
    )

    assert [k["id"] for k in r.json()["items"]] == ["A", "B"]


def test_nearby_rejects_an_unknown_need(client: TestClient) -> None:
    r = client.get("/api/v1/kiosks/nearby", params={"lat": 30, "lon": 120, "need": "coffee"})

    assert r.status_code == 422
    assert r.json()["message"].startswith("need:")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"venue_type": "casino"}, "venue_type"),
        ({"lat": 95.0}, "lat"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"id": "K 1/#"}, "id"),
        ({"name": ""}, "name"),
    ],
)
def test_invalid_kiosk_is_a_422_that_names_the_field_and_creates_nothing(
    client: TestClient, db: Database, override: dict[str, Any], field: str
) -> None:
    body = {
        "name": "x",
        "partner_id": _partner(client),
        "lat": 30.0,
        "lon": 120.0,
        "address": "somewhere",
        "venue_type": "105",
        **override,
    }

    r = client.post("/api/v1/kiosks", json=body)

    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["message"].startswith(f"{field}:")
    assert _count(db, Kiosk) == 0
    assert _count(db, Slot) == 0


def test_unknown_venue_type_message_lists_the_allowed_ids(client: TestClient) -> None:
    r = client.post(
        "/api/v1/kiosks",
        json={
            "name": "x",
            "partner_id": 1,
            "lat": 30,
            "lon": 120,
            "address": "a",
            "venue_type": "casino",
        },
    )

    assert "105 (metro_exit)" in r.json()["message"]


def test_kiosk_for_an_unknown_partner_is_a_404_and_creates_nothing(
    client: TestClient, db: Database
) -> None:
    r = client.post(
        "/api/v1/kiosks",
        json={
            "name": "x",
            "partner_id": 42,
            "lat": 30,
            "lon": 120,
            "address": "a",
            "venue_type": "105",
        },
    )

    assert r.status_code == 404
    assert "partner 42" in r.json()["message"]
    assert _count(db, Kiosk) == 0


def test_a_taken_kiosk_id_is_a_409_and_the_first_kiosk_is_untouched(
    client: TestClient, db: Database
) -> None:
    pid = _partner(client)
    first = _kiosk(client, pid, id="K000009")

    r = client.post(
        "/api/v1/kiosks",
        json={
            "id": "K000009",
            "name": "dup",
            "partner_id": pid,
            "lat": 30,
            "lon": 120,
            "address": "a",
            "venue_type": "105",
        },
    )

    assert r.status_code == 409
    assert client.get("/api/v1/kiosks/K000009").json()["name"] == first["name"]
    assert _count(db, Slot) == 22


def test_the_cloud_mqtt_username_cannot_be_a_kiosk_id(client: TestClient) -> None:
    r = client.post(
        "/api/v1/kiosks",
        json={
            "id": "cloud",
            "name": "x",
            "partner_id": _partner(client),
            "lat": 30,
            "lon": 120,
            "address": "a",
            "venue_type": "105",
        },
    )

    assert r.status_code == 422
    assert "reserved" in r.json()["message"]


def test_duplicate_partner_name_is_a_409(client: TestClient) -> None:
    _partner(client, "Same")

    r = client.post("/api/v1/partners", json={"name": "Same", "region": "X"})

    assert r.status_code == 409


def test_partners_are_listed_and_filtered_by_region(client: TestClient) -> None:
    _partner(client, "P1", "Hangzhou")
    _partner(client, "P2", "Shanghai")

    assert [p["name"] for p in client.get("/api/v1/partners").json()] == ["P1", "P2"]
    r = client.get("/api/v1/partners", params={"region": "Shanghai"})
    assert [p["name"] for p in r.json()] == ["P2"]


def test_rotating_a_password_invalidates_the_old_one(client: TestClient, db: Database) -> None:
    created = _kiosk(client, _partner(client), id="K000010")

    r = client.post("/api/v1/kiosks/K000010/password")

    assert r.status_code == 200
    new = r.json()["mqtt_password"]
    with db.transaction() as s:
        stored = s.get(Kiosk, "K000010")
        assert stored is not None
        assert verify_password(new, stored.mqtt_password_hash)
        assert not verify_password(created["mqtt_password"], stored.mqtt_password_hash)


def test_broker_sync_runs_after_registration_commits(db: Database, settings: Settings) -> None:
    seen: list[int] = []

    def sync() -> None:
        seen.append(_count(db, Kiosk))  # a fresh session sees the committed kiosk

    app = create_app(services=AppServices(settings=settings, db=db, broker_sync=sync))
    with TestClient(app) as c:
        _kiosk(c, _partner(c))

    assert seen == [1]


def test_registration_needs_the_operator_token_when_one_is_configured(
    db: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, operator_token="s3cret")
    with TestClient(create_app(settings, db=db)) as c:
        denied = c.post("/api/v1/partners", json={"name": "P", "region": "R"})
        allowed = c.post(
            "/api/v1/partners",
            json={"name": "P", "region": "R"},
            headers={"Authorization": "Bearer s3cret"},
        )
        listing = c.get("/api/v1/partners")
        operator_only = [
            c.post("/api/v1/kiosks/K000001/commands", json={"op": "ping"}),
            c.get("/api/v1/uplinks/stats"),
            c.post("/api/v1/kiosks/K000001/password"),
        ]

    assert [r.status_code for r in operator_only] == [401, 401, 401]
    assert denied.status_code == 401
    assert denied.json()["error"] == "unauthorized"
    assert allowed.status_code == 201
    assert listing.status_code == 200


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/kiosks/nearby" in paths


def test_seed_fleet_registers_kiosks_around_a_point_and_writes_a_provisioning_csv(
    db: Database, tmp_path: Path
) -> None:
    with db.transaction() as s:
        partner = Partner(name="Seed", region="Hangzhou", created_at=datetime.now(UTC))
        s.add(partner)
        s.flush()
        creds = kiosks.seed_fleet(
            s,
            30,
            partner_id=partner.id,
            lat=HANGZHOU[0],
            lon=HANGZHOU[1],
            radius_m=2000,
            rng=random.Random(7),
        )
    csv_path = kiosks.write_provisioning_csv(tmp_path / "fleet.csv", creds)

    lines = csv_path.read_text().splitlines()
    assert lines[0] == "kiosk_id,password"
    assert len(lines) == 31
    assert kiosks.read_provisioning_csv(csv_path) == creds
    assert oct(csv_path.stat().st_mode & 0o777) == "0o600"
    with db.transaction() as s:
        stored = {k.id: k for k in s.scalars(select(Kiosk))}
        assert len(stored) == 30
        assert _count(db, Slot) == 30 * 22
        for c in creds:
            assert verify_password(c.password, stored[c.kiosk_id].mqtt_password_hash)
        assert {k.venue_type for k in stored.values()} == {
            "105",
            "303",
            "205",
            "801",
            "1001",
            "807",
        }
        from server.kiosks.rules import haversine_m

        assert max(haversine_m(*HANGZHOU, k.lat, k.lon) for k in stored.values()) <= 2001
