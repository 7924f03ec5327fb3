"""Delivery reports over HTTP: booked vs played per kiosk and local day, adding up after
settlement, and each advertiser seeing only its own bookings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.bridge.dispatch import Dispatcher
from server.config import Settings
from server.core.db import Database
from server.core.shared_state import MemorySharedState
from server.delivery.service import record_plays
from server.kiosk_state.service import KioskStateService
from tests.accounts_env import Account, make_advertiser
from tests.integration.test_proof_of_play import (
    DAY,
    GRACE,
    Booked,
    SimKiosk,
    add_booking,
    add_kiosk,
    day_end,
    local,
    send_live,
    settle,
    spread,
)

OPERATOR = {"Authorization": "Bearer op-secret"}
DAY2 = DAY + timedelta(days=1)


@pytest.fixture
def client(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, operator_token="op-secret")
    with TestClient(create_app(settings, db=db)) as c:
        yield c


@pytest.fixture
def dispatcher(db: Database) -> Dispatcher:
    return Dispatcher(db, MemorySharedState(), service=KioskStateService(on_play=record_plays))


def two_days_on_two_kiosks(db: Database, advertiser: Account, price_fen: int = 2_000) -> Booked:
    """08:00-10:00 local on DAY and DAY2 on K1 and K2: 12 spots a kiosk-day."""
    hours = [local(d, h) for d in (DAY, DAY2) for h in (8, 9)]
    return add_booking(db, advertiser.id, {"K1": hours, "K2": hours}, price_fen=price_fen, days=2)


@pytest.fixture
def kiosks(db: Database) -> tuple[SimKiosk, SimKiosk]:
    return SimKiosk(add_kiosk(db, "K1")), SimKiosk(add_kiosk(db, "K2"))


def lines(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(x["kiosk_id"], x["local_date"]): x for x in body["lines"]}


def test_a_settled_day_adds_up_and_a_running_day_shows_pending_spots(
    client: TestClient, db: Database, dispatcher: Dispatcher, kiosks: tuple[SimKiosk, SimKiosk]
) -> None:
    acme = make_advertiser(client, "Acme", lost_spot_policy="credit", operator_headers=OPERATOR)
    b = two_days_on_two_kiosks(db, acme)
    k1, k2 = kiosks
    # DAY: K1 plays all 12 and 2 more, K2 only 9 (offline at the end). DAY2: 5 so far on K1.
    send_live(dispatcher, *(k1.play(b.code(), at) for at in spread(DAY, 8, 14)))
    send_live(dispatcher, *(k2.play(b.code(), at) for at in spread(DAY, 8, 9)))
    send_live(dispatcher, *(k1.play(b.code(), at) for at in spread(DAY2, 8, 5)))
    assert settle(db, day_end(DAY) + GRACE) == 2

    r = client.get(f"/api/v1/ads/bookings/{b.booking_id}/delivery", headers=acme.headers)

    assert r.status_code == 200, r.text
    body = r.json()
    got = lines(body)
    d1, d2 = DAY.isoformat(), DAY2.isoformat()
    assert set(got) == {("K1", d1), ("K2", d1), ("K1", d2), ("K2", d2)}
    assert {
        k: (x["booked"], x["played"], x["extra"], x["lost"], x["pending"]) for k, x in got.items()
    } == {
        ("K1", d1): (12, 12, 2, 0, 0),
        ("K2", d1): (12, 9, 0, 3, 0),
        ("K1", d2): (12, 5, 0, 0, 7),
        ("K2", d2): (12, 0, 0, 0, 12),
    }
    assert all(x["played"] + x["lost"] + x["pending"] == x["booked"] for x in got.values())
    assert [x["settled"] for x in body["lines"]] == [True, False, True, False]
    # 2,000 fen for 2 days = 1,000 a day; 3 of 12 lost = 250 fen back.
    assert got[("K2", d1)]["credited_fen"] == 250
    assert body["totals"] == {
        "booked": 48,
        "played": 26,
        "extra": 2,
        "pending": 19,
        "lost": 3,
        "make_good_owed": 0,
        "make_good_played": 0,
        "credited_fen": 250,
    }


def test_a_make_good_contract_reports_spots_owed_and_make_goods_shown(
    client: TestClient, db: Database, dispatcher: Dispatcher, kiosks: tuple[SimKiosk, SimKiosk]
) -> None:
    acme = make_advertiser(client, "Acme", lost_spot_policy="make_good", operator_headers=OPERATOR)
    b = two_days_on_two_kiosks(db, acme)
    k1, _ = kiosks
    send_live(dispatcher, *(k1.play(b.code(), at) for at in spread(DAY, 8, 10)))
    settle(db, day_end(DAY) + GRACE)
    send_live(dispatcher, *(k1.play(b.code(make_good=True), at) for at in spread(DAY2, 10, 2)))

    body = client.get(
        f"/api/v1/ads/bookings/{b.booking_id}/delivery",
        params={"from": DAY.isoformat(), "to": DAY2.isoformat()},
        headers=acme.headers,
    ).json()

    got = lines(body)
    assert got[("K1", DAY.isoformat())]["make_good_owed"] == 2
    assert got[("K2", DAY.isoformat())]["make_good_owed"] == 12
    assert got[("K1", DAY2.isoformat())]["make_good_played"] == 2
    assert body["totals"]["make_good_owed"] == 14
    assert body["totals"]["credited_fen"] == 0


def test_the_delivery_of_all_bookings_lists_only_the_advertisers_own(
    client: TestClient, db: Database, dispatcher: Dispatcher, kiosks: tuple[SimKiosk, SimKiosk]
) -> None:
    acme = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    globex = make_advertiser(client, "Globex", operator_headers=OPERATOR)
    mine = two_days_on_two_kiosks(db, acme)
    theirs = two_days_on_two_kiosks(db, globex)
    k1, _ = kiosks
    send_live(dispatcher, *(k1.play(theirs.code(), at) for at in spread(DAY, 8, 3)))

    r = client.get(
        "/api/v1/ads/delivery",
        params={"from": DAY.isoformat(), "to": DAY.isoformat()},
        headers=acme.headers,
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["booking_id"] for x in body["bookings"]] == [mine.booking_id]
    assert body["bookings"][0]["totals"]["booked"] == 24  # DAY only, both kiosks
    assert body["bookings"][0]["totals"]["played"] == 0
    theirs_body = client.get(
        "/api/v1/ads/delivery",
        params={"from": DAY.isoformat(), "to": DAY2.isoformat()},
        headers=globex.headers,
    ).json()
    assert [x["booking_id"] for x in theirs_body["bookings"]] == [theirs.booking_id]
    assert theirs_body["bookings"][0]["totals"]["played"] == 3


def test_another_advertisers_booking_is_not_found_like_one_that_does_not_exist(
    client: TestClient, db: Database, kiosks: tuple[SimKiosk, SimKiosk]
) -> None:
    acme = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    globex = make_advertiser(client, "Globex", operator_headers=OPERATOR)
    theirs = two_days_on_two_kiosks(db, globex)
    missing = theirs.booking_id + 1000

    r = client.get(f"/api/v1/ads/bookings/{theirs.booking_id}/delivery", headers=acme.headers)
    nothing = client.get(f"/api/v1/ads/bookings/{missing}/delivery", headers=acme.headers)

    assert r.status_code == nothing.status_code == 404
    assert r.json()["error"] == nothing.json()["error"] == "not_found"
    ok = client.get(f"/api/v1/ads/bookings/{theirs.booking_id}/delivery", headers=globex.headers)
    assert ok.status_code == 200


def test_operators_see_any_booking_and_advertisers_cannot_use_the_operator_report(
    client: TestClient, db: Database, kiosks: tuple[SimKiosk, SimKiosk]
) -> None:
    acme = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    b = two_days_on_two_kiosks(db, acme)
    url = f"/api/v1/ops/bookings/{b.booking_id}/delivery"

    r = client.get(url, headers=OPERATOR)
    assert r.status_code == 200, r.text
    assert r.json()["advertiser_id"] == acme.id
    assert r.json()["totals"]["booked"] == 48
    assert client.get(url, headers=acme.headers).status_code == 403
    assert client.get(url).status_code == 401
    assert client.get(f"/api/v1/ads/bookings/{b.booking_id}/delivery").status_code == 401
    assert (
        client.get(f"/api/v1/ads/bookings/{b.booking_id}/delivery", headers=OPERATOR).status_code
        == 403
    )


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"from": "2026-11-21", "to": "2026-11-20"}, 400, "invalid_date_range"),
        ({"from": "2025-01-01", "to": "2026-11-20"}, 400, "invalid_date_range"),
        ({"from": "2026-11-20"}, 422, "invalid_request"),
        ({"from": "yesterday", "to": "2026-11-20"}, 422, "invalid_request"),
    ],
)
def test_a_bad_date_range_is_refused_with_a_reason(
    client: TestClient, params: dict[str, str], status: int, error: str
) -> None:
    acme = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    r = client.get("/api/v1/ads/delivery", params=params, headers=acme.headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert r.json()["message"]
