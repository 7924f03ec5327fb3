"""A kiosk's ad-screen loop and opening hours (SPEC §4 Inventory): set at registration,
changed by operators, and never shrunk below what is already sold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.app import create_app
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.models import Creative, CreativeKind, CreativeStatus, LoopHour
from tests.accounts_env import make_advertiser

OPERATOR = {"Authorization": "Bearer op-secret"}


@pytest.fixture
def client(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, operator_token="op-secret")
    with TestClient(create_app(settings, db=db)) as c:
        yield c


@pytest.fixture
def partner_id(client: TestClient) -> int:
    r = client.post(
        "/api/v1/partners", json={"name": "Hangzhou Ops", "region": "Hangzhou"}, headers=OPERATOR
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _register(client: TestClient, partner_id: int, **over: Any) -> Any:
    body: dict[str, Any] = {
        "id": "K100001",
        "name": "Wulin Square exit C",
        "partner_id": partner_id,
        "lat": 30.27,
        "lon": 120.16,
        "address": "Yan'an Rd",
        "venue_type": "mall",
    }
    body.update(over)
    return client.post("/api/v1/kiosks", json=body, headers=OPERATOR)


def test_a_kiosk_registers_with_its_loop_and_opening_hours(
    client: TestClient, partner_id: int
) -> None:
    r = _register(client, partner_id, loop_seconds=90, spot_seconds=15, open_hour=22, close_hour=2)
    assert r.status_code == 201, r.text
    screen = client.get("/api/v1/kiosks/K100001").json()["ad_screen"]
    assert screen == {
        "kiosk_id": "K100001",
        "loop_seconds": 90,
        "spot_seconds": 15,
        "spots_per_loop": 6,
        "open_hour": 22,
        "close_hour": 2,
    }


def test_without_a_loop_a_kiosk_plays_sixty_seconds_of_six_ten_second_spots_all_day(
    client: TestClient, partner_id: int
) -> None:
    assert _register(client, partner_id).status_code == 201
    screen = client.get("/api/v1/kiosks/K100001").json()["ad_screen"]
    assert (screen["loop_seconds"], screen["spot_seconds"], screen["spots_per_loop"]) == (
        60,
        10,
        6,
    )
    assert (screen["open_hour"], screen["close_hour"]) == (0, 24)


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"loop_seconds": 60, "spot_seconds": 7}, "not a multiple of spot_seconds"),
        ({"open_hour": 9, "close_hour": 9}, "open_hour equals close_hour"),
        ({"close_hour": 25}, "close_hour"),
    ],
)
def test_a_loop_that_is_not_whole_spots_or_empty_opening_hours_are_refused(
    client: TestClient, partner_id: int, over: dict[str, Any], why: str
) -> None:
    r = _register(client, partner_id, **over)
    assert r.status_code == 422
    assert why in r.json()["message"]
    assert client.get("/api/v1/kiosks/K100001").status_code == 404


def test_operators_change_the_loop_and_hours_and_others_may_not(
    client: TestClient, partner_id: int
) -> None:
    assert _register(client, partner_id).status_code == 201
    url = "/api/v1/kiosks/K100001/ad-screen"
    r = client.patch(
        url, json={"loop_seconds": 30, "open_hour": 7, "close_hour": 23}, headers=OPERATOR
    )
    assert r.status_code == 200, r.text
    assert r.json()["spots_per_loop"] == 3
    assert (r.json()["open_hour"], r.json()["close_hour"]) == (7, 23)
    assert client.patch(url, json={"loop_seconds": 45}).status_code == 401
    bad = client.patch(url, json={"spot_seconds": 7}, headers=OPERATOR)
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_kiosk"
    missing = client.patch("/api/v1/kiosks/K999999/ad-screen", json={}, headers=OPERATOR)
    assert missing.status_code == 404
    assert client.get("/api/v1/kiosks/K100001").json()["ad_screen"]["spots_per_loop"] == 3


def test_a_loop_cannot_shrink_below_the_spots_already_sold(
    client: TestClient, partner_id: int, db: Database
) -> None:
    assert _register(client, partner_id).status_code == 201
    acme = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    now = clock.now()
    with db.transaction() as s:
        creative = Creative(
            advertiser_id=acme.id,
            title="Acme umbrellas",
            kind=CreativeKind.IMAGE,
            duration_ms=5_000,
            media_url="https://cdn.example.com/acme.png",
            sha256="2" * 64,
            status=CreativeStatus.APPROVED,
            created_at=now,
            updated_at=now,
        )
        s.add(creative)
        s.flush()
        creative_id = creative.id
    start = (now + timedelta(days=3)).date()
    r = client.post(
        "/api/v1/ads/bookings",
        json={
            "name": "Four spots",
            "spots_per_loop": 4,
            "start_date": start.isoformat(),
            "end_date": start.isoformat(),
            "dayparts": "08-10",
            "selection": {"kiosk_ids": ["K100001"]},
            "creative_ids": [creative_id],
        },
        headers=acme.headers,
    )
    assert r.status_code == 201, r.text
    confirmed = client.post(f"/api/v1/ads/bookings/{r.json()['id']}/confirm", headers=acme.headers)
    assert confirmed.status_code == 200, confirmed.text

    url = "/api/v1/kiosks/K100001/ad-screen"
    refused = client.patch(url, json={"loop_seconds": 30}, headers=OPERATOR)
    assert refused.status_code == 409
    assert len(refused.json()["details"]["hours"]) == 2
    assert client.get("/api/v1/kiosks/K100001").json()["ad_screen"]["loop_seconds"] == 60

    grown = client.patch(url, json={"loop_seconds": 120}, headers=OPERATOR)
    assert grown.status_code == 200
    assert grown.json()["spots_per_loop"] == 12
    with db.transaction() as s:
        caps = set(s.scalars(select(LoopHour.capacity)))
        assert caps == {12}
        assert s.scalar(select(func.sum(LoopHour.sold))) == 8
