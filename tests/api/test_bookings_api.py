"""Booking screen loops over HTTP, on SQLite and PostgreSQL (SPEC §4 Booking): the quote
before confirming, holds and their expiry, availability that never names another
advertiser's bookings, tenant isolation, and bad input that reserves nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.app import create_app
from server.bookings import jobs
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.models import Booking, Creative, CreativeKind, CreativeStatus, LoopHour, Reservation
from tests.accounts_env import Account, make_advertiser

OPERATOR = {"Authorization": "Bearer op-secret"}
HANGZHOU = (30.2741, 120.1551)


@pytest.fixture
def client(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, operator_token="op-secret")
    with TestClient(create_app(settings, db=db)) as c:
        yield c


def _partner(client: TestClient, name: str, region: str) -> int:
    r = client.post("/api/v1/partners", json={"name": name, "region": region}, headers=OPERATOR)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _kiosk(client: TestClient, kiosk_id: str, partner_id: int, **over: Any) -> str:
    body: dict[str, Any] = {
        "id": kiosk_id,
        "name": f"Kiosk {kiosk_id}",
        "partner_id": partner_id,
        "lat": HANGZHOU[0],
        "lon": HANGZHOU[1],
        "address": "Zhongshan N Rd, Hangzhou",
        "venue_type": "105",
    }
    body.update(over)
    r = client.post("/api/v1/kiosks", json=body, headers=OPERATOR)
    assert r.status_code == 201, r.text
    return kiosk_id


def _creative(db: Database, advertiser_id: int, *, duration_ms: int = 10_000) -> int:
    now = clock.now()
    with db.transaction() as s:
        c = Creative(
            advertiser_id=advertiser_id,
            title="雨天出行，就近还伞",
            body_text="",
            declared_text="",
            kind=CreativeKind.IMAGE,
            duration_ms=duration_ms,
            media_url="https://cdn.example.com/a.png",
            sha256="0" * 64,
            status=CreativeStatus.APPROVED,
            created_at=now,
            updated_at=now,
        )
        s.add(c)
        s.flush()
        return c.id


@dataclass(frozen=True)
class Env:
    client: TestClient
    db: Database
    acme: Account
    beta: Account
    acme_creative: int
    beta_creative: int
    start: date

    def booking(self, who: Account | None = None, **over: Any) -> dict[str, Any]:
        who = who or self.acme
        body: dict[str, Any] = {
            "name": "Spring campaign",
            "spots_per_loop": 2,
            "start_date": self.start.isoformat(),
            "end_date": (self.start + timedelta(days=2)).isoformat(),
            "dayparts": "07-10",
            "selection": {"kiosk_ids": ["KM1", "KS1"]},
            "creative_ids": [self.acme_creative if who is self.acme else self.beta_creative],
        }
        body.update(over)
        return body

    def create(self, who: Account | None = None, **over: Any) -> dict[str, Any]:
        who = who or self.acme
        r = self.client.post(
            "/api/v1/ads/bookings", json=self.booking(who, **over), headers=who.headers
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def act(self, who: Account, booking_id: int, action: str, **body: Any) -> Any:
        return self.client.post(
            f"/api/v1/ads/bookings/{booking_id}/{action}", json=body or None, headers=who.headers
        )

    def availability(self, headers: dict[str, str], **over: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "selection": {"kiosk_ids": ["KM1", "KS1"]},
            "start_date": self.start.isoformat(),
            "end_date": (self.start + timedelta(days=2)).isoformat(),
            "dayparts": "07-10",
        }
        body.update(over)
        r = self.client.post("/api/v1/ads/availability", json=body, headers=headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def sold_total(self) -> int:
        with self.db.transaction() as s:
            return int(s.scalar(select(func.coalesce(func.sum(LoopHour.sold), 0))) or 0)

    def reserved_total(self) -> int:
        with self.db.transaction() as s:
            return int(s.scalar(select(func.coalesce(func.sum(Reservation.spots), 0))) or 0)


@pytest.fixture
def env(client: TestClient, db: Database) -> Env:
    hz = _partner(client, "Hangzhou Ops", "Hangzhou")
    sh = _partner(client, "Shanghai Ops", "Shanghai")
    _kiosk(client, "KM1", hz, venue_type="105")  # metro, 800 fen
    _kiosk(client, "KS1", hz, venue_type="205", lat=30.2800)  # mall, 600 fen, ~650 m north
    _kiosk(client, "KB1", sh, venue_type="303", lat=31.23, lon=121.47)  # bus stop
    _kiosk(
        client,
        "KI1",
        sh,
        venue_type="807",
        timezone="Asia/Kolkata",
        open_hour=8,
        lat=31.24,
        lon=121.48,
    )
    acme = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    beta = make_advertiser(client, "Beta", operator_headers=OPERATOR)
    start = clock.now().date() + timedelta(days=10)
    return Env(client, db, acme, beta, _creative(db, acme.id), _creative(db, beta.id), start)


# --- quote ------------------------------------------------------------------------------------


def test_a_draft_shows_its_price_per_kiosk_and_the_total_before_anything_is_reserved(
    env: Env,
) -> None:
    b = env.create()
    assert b["status"] == "draft"
    assert {k["kiosk_id"]: (k["days"], k["price_fen"]) for k in b["kiosks"]} == {
        "KM1": (3, 2 * 3 * 800),
        "KS1": (3, 2 * 3 * 600),
    }
    assert b["price_fen"] == 8400
    assert b["price"] == "¥84.00"
    assert b["selection"] == {"kiosk_ids": ["KM1", "KS1"]}
    assert env.sold_total() == 0


def test_an_operators_venue_price_is_what_the_next_quote_uses(env: Env) -> None:
    r = env.client.put(
        "/api/v1/ops/ads/prices/metro_exit", json={"fen_per_spot_day": 1000}, headers=OPERATOR
    )
    assert r.status_code == 200, r.text
    prices = {p["venue_type"]: p["fen_per_spot_day"] for p in r.json()}
    assert prices["105"] == 1000
    assert prices["205"] == 600
    refused = env.client.put(
        "/api/v1/ops/ads/prices/105", json={"fen_per_spot_day": 1}, headers=env.acme.headers
    )
    assert refused.status_code == 403
    b = env.create(selection={"kiosk_ids": ["KM1"]}, spots_per_loop=1)
    assert b["price_fen"] == 1 * 3 * 1000


def test_kiosks_are_picked_by_region_venue_type_and_distance_together(env: Env) -> None:
    by_region = env.create(selection={"regions": ["Shanghai"]}, dayparts="09-11")
    assert [k["kiosk_id"] for k in by_region["kiosks"]] == ["KB1", "KI1"]
    metro_in_hz = env.create(selection={"regions": ["Hangzhou"], "venue_types": ["metro_exit"]})
    assert [k["kiosk_id"] for k in metro_in_hz["kiosks"]] == ["KM1"]
    near = {"lat": HANGZHOU[0], "lon": HANGZHOU[1], "radius_m": 300}
    assert [k["kiosk_id"] for k in env.create(selection={"near": near})["kiosks"]] == ["KM1"]
    wider = {**near, "radius_m": 1000}
    assert [k["kiosk_id"] for k in env.create(selection={"near": wider})["kiosks"]] == [
        "KM1",
        "KS1",
    ]


# --- hold, release, expiry, confirm ------------------------------------------------------------


def test_hold_reserves_the_spots_and_release_gives_them_back(env: Env) -> None:
    b = env.create()
    held = env.act(env.acme, b["id"], "hold", minutes=45)
    assert held.status_code == 200, held.text
    assert held.json()["status"] == "held"
    assert held.json()["revision"] == b["revision"] + 1
    assert env.sold_total() == env.reserved_total() == 2 * 2 * 3 * 3  # spots x kiosks x days x h
    a = env.availability(env.acme.headers)
    km1 = next(k for k in a["kiosks"] if k["kiosk_id"] == "KM1")
    assert km1["sold"] == [2] * 9
    assert km1["free"] == [4] * 9
    again = env.act(env.acme, b["id"], "hold", minutes=600)
    assert again.status_code == 200
    assert again.json()["held_until"] == held.json()["held_until"]  # not extended
    released = env.act(env.acme, b["id"], "release")
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "released"
    assert env.sold_total() == env.reserved_total() == 0
    refused = env.act(env.acme, b["id"], "confirm")
    assert refused.status_code == 409
    assert refused.json()["error"] == "booking_state"


def test_an_expired_hold_gives_its_spots_back_once_the_clock_passes_it(env: Env) -> None:
    b = env.create()
    assert env.act(env.acme, b["id"], "hold", minutes=10).status_code == 200
    assert env.sold_total() == 36
    clock.advance(timedelta(minutes=9))
    with env.db.transaction(immediate=True) as s:
        assert jobs.expire_holds(s, clock.now()) == 0
    clock.advance(timedelta(minutes=2))
    with env.db.transaction(immediate=True) as s:
        assert jobs.expire_holds(s, clock.now()) == 1
    with env.db.transaction(immediate=True) as s:
        assert jobs.expire_holds(s, clock.now()) == 0  # idempotent
    assert env.sold_total() == env.reserved_total() == 0
    got = env.client.get(f"/api/v1/ads/bookings/{b['id']}", headers=env.acme.headers).json()
    assert got["status"] == "expired"
    assert got["held_until"] is None


def test_confirming_after_the_hold_ran_out_reserves_again_without_waiting_for_the_job(
    env: Env,
) -> None:
    b = env.create()
    env.act(env.acme, b["id"], "hold", minutes=5)
    clock.advance(timedelta(minutes=6))
    confirmed = env.act(env.acme, b["id"], "confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "confirmed"
    assert env.sold_total() == env.reserved_total() == 36


def test_confirming_twice_answers_the_same_booking_and_changes_nothing(env: Env) -> None:
    b = env.create()
    first = env.act(env.acme, b["id"], "confirm")
    assert first.status_code == 200, first.text
    second = env.act(env.acme, b["id"], "confirm")
    assert second.status_code == 200
    assert second.json() == first.json()
    assert env.sold_total() == 36
    refused = env.act(env.acme, b["id"], "release")
    assert refused.status_code == 409
    assert env.sold_total() == 36


def test_the_loser_of_the_last_spots_is_told_which_kiosks_and_local_hours_were_full(
    env: Env,
) -> None:
    first = env.create(spots_per_loop=5)
    assert env.act(env.acme, first["id"], "confirm").status_code == 200
    second = env.create(env.beta, spots_per_loop=2, selection={"kiosk_ids": ["KM1"]})
    r = env.act(env.beta, second["id"], "confirm")
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "sold_out"
    assert body["details"]["kiosk_ids"] == ["KM1"]
    assert body["details"]["full_hours"] == 9
    first_full = body["details"]["full"][0]
    assert first_full["kiosk_id"] == "KM1"
    assert first_full["local_date"] == env.start.isoformat()
    assert first_full["local_hour"] == 7
    assert first_full["free"] == 1
    assert {(f["local_date"], f["local_hour"]) for f in body["details"]["full"]} == {
        ((env.start + timedelta(days=d)).isoformat(), h) for d in range(3) for h in (7, 8, 9)
    }
    got = env.client.get(f"/api/v1/ads/bookings/{second['id']}", headers=env.beta.headers)
    assert got.json()["status"] == "draft"
    assert env.sold_total() == 5 * 2 * 9


# --- availability -------------------------------------------------------------------------------


def test_availability_shows_own_bookings_by_id_and_other_advertisers_only_as_a_count(
    env: Env,
) -> None:
    mine = env.create()
    theirs = env.create(env.beta, spots_per_loop=1, selection={"kiosk_ids": ["KM1"]})
    env.act(env.acme, mine["id"], "hold")
    env.act(env.beta, theirs["id"], "confirm")
    a = env.availability(env.acme.headers)
    (cal,) = a["calendars"]
    assert cal["timezone"] == "Asia/Shanghai"
    assert cal["local"][:3] == [f"{env.start.isoformat()}T{h:02d}" for h in (7, 8, 9)]
    km1 = next(k for k in a["kiosks"] if k["kiosk_id"] == "KM1")
    assert km1["capacity"] == 6
    assert km1["sold"] == [3] * 9
    assert km1["free"] == [3] * 9
    assert km1["bookings"] == {str(mine["id"]): [2] * 9}
    assert km1["held_by_others"] == [1] * 9
    r = env.client.post(
        "/api/v1/ads/availability",
        json={
            "selection": {"kiosk_ids": ["KM1"]},
            "start_date": env.start.isoformat(),
            "end_date": env.start.isoformat(),
        },
        headers=env.acme.headers,
    )
    assert f'"{theirs["id"]}"' not in r.text.replace(f'"{mine["id"]}"', "")
    ops = env.availability(OPERATOR)
    km1_ops = next(k for k in ops["kiosks"] if k["kiosk_id"] == "KM1")
    assert km1_ops["bookings"] == {str(mine["id"]): [2] * 9, str(theirs["id"]): [1] * 9}
    assert km1_ops["held_by_others"] is None


def test_availability_answers_per_calendar_for_kiosks_in_two_time_zones(env: Env) -> None:
    a = env.availability(
        env.acme.headers, selection={"kiosk_ids": ["KB1", "KI1"]}, dayparts="07-09"
    )
    cals = {c["timezone"]: c for c in a["calendars"]}
    assert set(cals) == {"Asia/Shanghai", "Asia/Kolkata"}
    day = env.start.isoformat()
    # KI1 opens at 08:00: its 07:00 is not for sale
    assert cals["Asia/Kolkata"]["local"][0] == f"{day}T08"
    assert cals["Asia/Kolkata"]["starts_at"][0].endswith(":30:00Z")
    assert cals["Asia/Shanghai"]["local"][:2] == [f"{day}T07", f"{day}T08"]
    by_id = {k["kiosk_id"]: k for k in a["kiosks"]}
    assert len(by_id["KI1"]["free"]) == 3
    assert len(by_id["KB1"]["free"]) == 6


# --- tenants ------------------------------------------------------------------------------------


def test_another_advertisers_booking_is_not_found_whatever_is_asked(env: Env) -> None:
    theirs = env.create(env.beta)
    r = env.client.get(f"/api/v1/ads/bookings/{theirs['id']}", headers=env.acme.headers)
    assert r.status_code == 404
    for action in ("hold", "confirm", "release"):
        r = env.act(env.acme, theirs["id"], action)
        assert r.status_code == 404, action
        assert r.json()["error"] == "not_found"
    listed = env.client.get("/api/v1/ads/bookings", headers=env.acme.headers).json()
    assert listed["total"] == 0
    assert env.sold_total() == 0
    got = env.client.get(f"/api/v1/ads/bookings/{theirs['id']}", headers=env.beta.headers)
    assert got.json()["status"] == "draft"
    ops = env.client.get(f"/api/v1/ops/ads/bookings/{theirs['id']}", headers=OPERATOR)
    assert ops.status_code == 200
    assert env.client.get("/api/v1/ops/ads/bookings", headers=env.acme.headers).status_code == 403


def test_another_advertisers_creative_is_as_unknown_as_a_missing_one(env: Env) -> None:
    r = env.client.post(
        "/api/v1/ads/bookings",
        json=env.booking(creative_ids=[env.beta_creative]),
        headers=env.acme.headers,
    )
    assert r.status_code == 404
    assert r.json()["details"] == {"creative_ids": [env.beta_creative]}


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "status", "code"),
    [
        ({"end_date": "2020-01-01"}, 400, "invalid_dates"),
        ({"dayparts": "07-10,09-12"}, 400, "overlapping_dayparts"),
        ({"dayparts": "7 to 10"}, 400, "invalid_daypart"),
        ({"spots_per_loop": 7}, 400, "spots_exceed_capacity"),
        ({"selection": {"kiosk_ids": ["KM1", "NOPE1"]}}, 404, "not_found"),
        ({"selection": {"venue_types": ["cinema"]}}, 400, "invalid_venue_type"),
        ({"selection": {"regions": ["Atlantis"]}}, 400, "no_kiosks"),
        ({"selection": {"kiosk_ids": ["KI1"]}, "dayparts": "02-05"}, 400, "no_open_hours"),
        ({"selection": {}}, 422, "invalid_request"),
        ({"spots_per_loop": 0}, 422, "invalid_request"),
    ],
)
def test_bad_booking_input_is_refused_with_a_code_and_creates_nothing(
    env: Env, over: dict[str, Any], status: int, code: str
) -> None:
    r = env.client.post("/api/v1/ads/bookings", json=env.booking(**over), headers=env.acme.headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code
    if code == "not_found":
        assert r.json()["details"]["kiosk_ids"] == ["NOPE1"]
    with env.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Booking)) == 0
    assert env.sold_total() == 0


def test_a_creative_longer_than_a_spot_is_refused(env: Env) -> None:
    long_one = _creative(env.db, env.acme.id, duration_ms=15_000)
    r = env.client.post(
        "/api/v1/ads/bookings",
        json=env.booking(creative_ids=[long_one]),
        headers=env.acme.headers,
    )
    assert r.status_code == 400
    assert r.json()["error"] == "creative_too_long"


def test_a_hold_longer_than_a_day_is_refused_and_reserves_nothing(env: Env) -> None:
    b = env.create()
    r = env.act(env.acme, b["id"], "hold", minutes=24 * 60 + 1)
    assert r.status_code == 422
    assert env.sold_total() == 0


def test_partners_and_anonymous_callers_get_no_availability(env: Env) -> None:
    body = {
        "selection": {"kiosk_ids": ["KM1"]},
        "start_date": env.start.isoformat(),
        "end_date": env.start.isoformat(),
    }
    assert env.client.post("/api/v1/ads/availability", json=body).status_code == 401
