"""Partner dashboard, alerts and rebalancing over HTTP (issue 5), on SQLite and PostgreSQL:
a partner sees only its own kiosks, alerts open and close as conditions come and go,
rebalancing tasks are suggested and done, other tenants' ids are refused, and the live
stream pushes an offline flip."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from server.alerts import jobs as alert_jobs
from server.alerts import repository as alerts_repo
from server.alerts import rules
from server.app import create_app
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.models import (
    Advertiser,
    AuditLog,
    BillingMode,
    Booking,
    BookingStatus,
    DepositPayment,
    DepositStatus,
    KioskState,
    LostSpotPolicy,
    Rental,
    RentalStatus,
    Rider,
    Slot,
    SlotEventRecord,
    SlotStatus,
)
from server.models.delivery import DeliveryDay
from tests.accounts_env import log_in, make_advertiser
from tests.wechat_env import serve

OPERATOR = {"Authorization": "Bearer op-secret"}
#: Thursday 26 November 2026, 10:00 in Shanghai (02:00 UTC): the local day began at
#: 25 Nov 16:00 UTC, the ISO week (Monday 23 Nov, local) at 22 Nov 16:00 UTC.
NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    client: TestClient
    db: Database
    p1: int
    p2: int
    alice: dict[str, str]  # partner 1's user
    bob: dict[str, str]  # partner 2's user
    k1: str
    k2: str
    k3: str  # partner 2's


def _partner(client: TestClient, name: str) -> int:
    r = client.post("/api/v1/partners", json={"name": name, "region": name}, headers=OPERATOR)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _kiosk(client: TestClient, partner_id: int, kiosk_id: str, lat: float, lon: float) -> str:
    body = {
        "id": kiosk_id,
        "name": f"Kiosk {kiosk_id}",
        "partner_id": partner_id,
        "lat": lat,
        "lon": lon,
        "address": "Nanjing Rd",
        "venue_type": "105",
    }
    r = client.post("/api/v1/kiosks", json=body, headers=OPERATOR)
    assert r.status_code == 201, r.text
    return kiosk_id


def _partner_user(client: TestClient, login: str, partner_id: int) -> dict[str, str]:
    body = {
        "login": login,
        "password": f"pw-{login}-secret",
        "role": "partner",
        "partner_id": partner_id,
    }
    r = client.post("/api/v1/users", json=body, headers=OPERATOR)
    assert r.status_code == 201, r.text
    return log_in(client, login, f"pw-{login}-secret")


def _settings(tmp_path: Path, **over: Any) -> Settings:
    return Settings(data_dir=tmp_path, operator_token="op-secret", **over)


@pytest.fixture
def world(db: Database, tmp_path: Path) -> Iterator[World]:
    clock.advance(NOW - clock.now())
    with TestClient(create_app(_settings(tmp_path), db=db)) as client:
        p1, p2 = _partner(client, "Shanghai Ops"), _partner(client, "Suzhou Ops")
        yield World(
            client=client,
            db=db,
            p1=p1,
            p2=p2,
            alice=_partner_user(client, "alice", p1),
            bob=_partner_user(client, "bob", p2),
            k1=_kiosk(client, p1, "K000001", 31.2300, 121.4700),
            k2=_kiosk(client, p1, "K000002", 31.2300, 121.4800),
            k3=_kiosk(client, p2, "K000003", 31.3000, 120.6000),
        )


def _stock(
    db: Database,
    kiosk_id: str,
    umbrellas: int,
    *,
    faulty: dict[int, datetime] | None = None,
    online: bool | None = None,
) -> None:
    """Slots 1..umbrellas hold umbrellas, `faulty` slots are faulty since the given time,
    the rest are empty."""
    faulty = faulty or {}
    now = clock.now()
    with db.transaction() as s:
        for slot in s.scalars(select(Slot).where(Slot.kiosk_id == kiosk_id)):
            if slot.slot_no in faulty:
                slot.status, slot.tag, slot.observed_at = (
                    SlotStatus.FAULT,
                    None,
                    faulty[slot.slot_no],
                )
            elif slot.slot_no <= umbrellas:
                slot.status, slot.tag = SlotStatus.UMBRELLA, f"E2{kiosk_id}{slot.slot_no:04d}"
                slot.observed_at = now
            else:
                slot.status, slot.tag, slot.observed_at = SlotStatus.EMPTY, None, now
            slot.updated_at = now
        if online is not None:
            s.execute(
                update(KioskState)
                .where(KioskState.kiosk_id == kiosk_id)
                .values(online=online, online_changed_at=now, last_seen_at=now)
            )


def _rider(s: Any, n: int) -> tuple[int, int]:
    rider = Rider(openid=f"openid-{n}", created_at=NOW)
    s.add(rider)
    s.flush()
    pay = DepositPayment(
        rider_id=rider.id,
        out_trade_no=f"DEP{n:08d}",
        idempotency_key=f"dep-{n}",
        amount_fen=3000,
        status=DepositStatus.HELD,
        created_at=NOW,
    )
    s.add(pay)
    s.flush()
    return rider.id, pay.id


def _rental(
    s: Any,
    n: int,
    kiosk_id: str,
    started_at: datetime,
    *,
    status: RentalStatus = RentalStatus.RETURNED,
    forfeited_at: datetime | None = None,
    returned_to: str | None = None,
    returned_at: datetime | None = None,
) -> None:
    rider_id, pay_id = _rider(s, n)
    s.add(
        Rental(
            rider_id=rider_id,
            idempotency_key=f"rent-{n}",
            deposit_payment_id=pay_id,
            deposit_fen=3000,
            status=status,
            kiosk_id=kiosk_id,
            slot_no=1,
            started_at=started_at,
            deadline_at=started_at + timedelta(days=7),
            forfeited_at=forfeited_at,
            return_kiosk_id=returned_to,
            returned_at=returned_at,
            created_at=started_at,
            updated_at=started_at,
        )
    )


def _plays(db: Database, kiosk_id: str, day: date, played: int, make_good: int = 0) -> None:
    with db.transaction() as s:
        adv = s.scalar(select(Advertiser).where(Advertiser.name == "Acme"))
        if adv is None:
            adv = Advertiser(
                name="Acme",
                billing_mode=BillingMode.PREPAID,
                lost_spot_policy=LostSpotPolicy.MAKE_GOOD,
                created_at=NOW,
            )
            s.add(adv)
            s.flush()
        booking = Booking(
            advertiser_id=adv.id,
            name=f"b-{kiosk_id}-{day}",
            status=BookingStatus.CONFIRMED,
            spots_per_loop=1,
            start_date=day,
            end_date=day,
            dayparts="all",
            selection="{}",
            price_fen=0,
            created_at=NOW,
            updated_at=NOW,
        )
        s.add(booking)
        s.flush()
        s.add(
            DeliveryDay(
                booking_id=booking.id,
                kiosk_id=kiosk_id,
                local_date=day,
                played=played,
                make_good_played=make_good,
            )
        )


def _evaluate(db: Database) -> int:
    with db.transaction() as s:
        return alert_jobs.evaluate(s, clock.now())


def _near(stamp: str, expected: datetime) -> bool:
    """The clock keeps running after a test moved it: a few seconds' slack."""
    return abs(datetime.fromisoformat(stamp) - expected) < timedelta(seconds=30)


def _tile(body: dict[str, Any], kiosk_id: str) -> dict[str, Any]:
    (tile,) = [k for k in body["kiosks"] if k["id"] == kiosk_id]
    return tile


# --- dashboard -------------------------------------------------------------------------


def test_a_partner_sees_its_own_kiosks_with_todays_and_this_weeks_counts(world: World) -> None:
    w = world
    _stock(w.db, w.k1, 5, faulty={22: NOW}, online=True)
    _stock(w.db, w.k3, 9, online=True)
    day_start = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    week_start = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
    with w.db.transaction() as s:
        _rental(s, 1, w.k1, day_start + timedelta(minutes=1))  # today
        _rental(s, 2, w.k1, NOW - timedelta(minutes=5))  # today
        _rental(s, 3, w.k1, week_start + timedelta(minutes=1))  # Monday: this week
        _rental(s, 4, w.k1, week_start - timedelta(minutes=1))  # last Sunday: neither
        _rental(s, 5, w.k2, NOW - timedelta(hours=1))
        _rental(s, 6, w.k3, NOW - timedelta(hours=1))  # partner 2's
        # forfeited today (started 8 days ago) and on Tuesday; a forfeiture last week
        _rental(
            s,
            7,
            w.k1,
            NOW - timedelta(days=8),
            status=RentalStatus.FORFEITED,
            forfeited_at=day_start + timedelta(hours=2),
        )
        _rental(
            s,
            8,
            w.k1,
            NOW - timedelta(days=9),
            status=RentalStatus.FORFEITED,
            forfeited_at=week_start + timedelta(days=1),
        )
        _rental(
            s,
            9,
            w.k2,
            NOW - timedelta(days=14),
            status=RentalStatus.FORFEITED,
            forfeited_at=week_start - timedelta(hours=1),
        )
    _plays(w.db, w.k1, date(2026, 11, 26), 40, make_good=2)
    _plays(w.db, w.k1, date(2026, 11, 25), 99)  # yesterday
    _plays(w.db, w.k3, date(2026, 11, 26), 7)

    r = w.client.get("/api/v1/partner/dashboard", headers=w.alice)

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["partner_id"] == w.p1
    assert [k["id"] for k in body["kiosks"]] == [w.k1, w.k2]
    k1 = _tile(body, w.k1)
    assert k1 | {"last_seen_at": None, "online_changed_at": None} == {
        "id": w.k1,
        "name": "Kiosk K000001",
        "partner_id": w.p1,
        "lat": 31.23,
        "lon": 121.47,
        "address": "Nanjing Rd",
        "venue_type": "105",
        "capacity": 22,
        "online": True,
        "last_seen_at": None,
        "online_changed_at": None,
        "umbrellas": 5,
        "empty_slots": 16,
        "faulty_slots": 1,
        "rentals_today": 2,
        "rentals_week": 3,
        "forfeitures_today": 1,
        "forfeitures_week": 2,
        "ad_plays_today": 42,
        "open_alerts": 0,
    }
    assert _near(k1["last_seen_at"], NOW)
    k2 = _tile(body, w.k2)
    assert (k2["online"], k2["umbrellas"], k2["empty_slots"], k2["rentals_today"]) == (
        False,
        0,
        22,
        1,
    )
    assert (k2["forfeitures_week"], k2["ad_plays_today"]) == (0, 0)
    assert body["totals"] == {
        "kiosks": 2,
        "online": 1,
        "offline": 1,
        "umbrellas": 5,
        "empty_slots": 38,
        "faulty_slots": 1,
        "rentals_today": 3,
        "rentals_week": 4,
        "forfeitures_today": 1,
        "forfeitures_week": 2,
        "ad_plays_today": 42,
        "open_alerts": 0,
    }
    assert body["bounds"] == {
        "min_lat": 31.23,
        "min_lon": 121.47,
        "max_lat": 31.23,
        "max_lon": 121.48,
    }
    assert w.k3 not in json.dumps(body)


def test_an_operator_sees_every_partner_or_one_partner_when_asked(world: World) -> None:
    w = world
    everyone = w.client.get("/api/v1/partner/dashboard", headers=OPERATOR).json()
    assert [k["id"] for k in everyone["kiosks"]] == [w.k1, w.k2, w.k3]
    assert everyone["partner_id"] is None
    one = w.client.get(f"/api/v1/partner/dashboard?partner_id={w.p2}", headers=OPERATOR).json()
    assert [k["id"] for k in one["kiosks"]] == [w.k3]
    unknown = w.client.get("/api/v1/partner/dashboard?partner_id=999", headers=OPERATOR)
    assert unknown.status_code == 404


def test_a_partner_naming_another_partner_is_answered_not_found(world: World) -> None:
    w = world
    r = w.client.get(f"/api/v1/partner/dashboard?partner_id={w.p2}", headers=w.alice)
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    own = w.client.get(f"/api/v1/partner/dashboard?partner_id={w.p1}", headers=w.alice)
    assert own.status_code == 200


def test_advertisers_and_strangers_have_no_partner_view(world: World) -> None:
    w = world
    acme = make_advertiser(w.client, "Acme Ads", operator_headers=OPERATOR)
    for path in (
        "/api/v1/partner/dashboard",
        "/api/v1/partner/alerts",
        "/api/v1/partner/rebalancing/tasks",
    ):
        assert w.client.get(path, headers=acme.headers).status_code == 403
        assert w.client.get(path).status_code == 401


# --- alerts ----------------------------------------------------------------------------


def _alerts(w: World, headers: dict[str, str]) -> dict[str, Any]:
    r = w.client.get("/api/v1/partner/alerts", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _open_kinds(body: dict[str, Any]) -> set[tuple[str, str, int | None]]:
    return {(a["kiosk_id"], a["kind"], a["slot_no"]) for a in body["open"]}


def test_alerts_open_when_conditions_hold_and_close_when_they_clear(world: World) -> None:
    w = world
    _stock(w.db, w.k1, 10, online=True)
    _stock(w.db, w.k2, 1, online=False)
    _stock(w.db, w.k3, 10, online=True)

    assert _evaluate(w.db) == 1  # k2 nearly empty; offline only for 0 minutes
    assert _open_kinds(_alerts(w, w.alice)) == {(w.k2, "nearly_empty", None)}
    assert _evaluate(w.db) == 0  # idempotent: nothing opens twice

    clock.advance(timedelta(minutes=11))
    _stock(w.db, w.k1, 10, faulty={3: clock.now() - timedelta(minutes=31)})
    assert _evaluate(w.db) == 2
    assert _open_kinds(_alerts(w, w.alice)) == {
        (w.k2, "nearly_empty", None),
        (w.k2, "offline", None),
        (w.k1, "slot_faulty", 3),
    }
    offline = next(a for a in _alerts(w, w.alice)["open"] if a["kind"] == "offline")
    assert offline["message"] == "offline for 11 min"
    assert _near(offline["opened_at"], NOW + timedelta(minutes=11))
    dash = w.client.get("/api/v1/partner/dashboard", headers=w.alice).json()
    assert (_tile(dash, w.k2)["open_alerts"], dash["totals"]["open_alerts"]) == (2, 3)
    assert len(dash["alerts"]) == 3
    assert _alerts(w, w.bob) == {"open": [], "closed": []}

    clock.advance(timedelta(minutes=1))
    _stock(w.db, w.k1, 10)  # slot 3 repaired
    _stock(w.db, w.k2, 8, online=True)  # back online and restocked
    assert _evaluate(w.db) == 3

    body = _alerts(w, w.alice)
    assert body["open"] == []
    assert {(a["kiosk_id"], a["kind"]) for a in body["closed"]} == {
        (w.k2, "nearly_empty"),
        (w.k2, "offline"),
        (w.k1, "slot_faulty"),
    }
    assert len({a["closed_at"] for a in body["closed"]}) == 1  # one job run closed them
    assert _near(body["closed"][0]["closed_at"], NOW + timedelta(minutes=12))


def test_an_alert_another_scheduler_opened_meanwhile_is_not_opened_twice(world: World) -> None:
    w = world
    _stock(w.db, w.k1, 0, online=True)
    with w.db.transaction() as s:  # a second scheduler's plan, made before the first commits
        stale = rules.reconcile(
            [
                f
                for k in alerts_repo.conditions(s, clock.now())
                for f in rules.findings(k, clock.now(), rules.Thresholds())
            ],
            alerts_repo.open_keys(s),
        )
    assert _evaluate(w.db) == len(stale.to_open) == 3  # k1 nearly empty, k2 and k3 too
    with w.db.transaction() as s:
        assert alerts_repo.insert_open(s, stale.to_open, clock.now()) == 0
        assert alerts_repo.close(s, [], clock.now()) == 0
    assert len(_alerts(w, OPERATOR)["open"]) == 3


def test_an_alert_is_acknowledged_once_and_the_ack_is_audited(world: World) -> None:
    w = world
    _stock(w.db, w.k1, 0, online=True)
    _stock(w.db, w.k2, 10, online=True)
    _stock(w.db, w.k3, 10, online=True)
    _evaluate(w.db)
    (alert,) = _alerts(w, w.alice)["open"]

    first = w.client.post(f"/api/v1/partner/alerts/{alert['id']}/ack", headers=w.alice)
    clock.advance(timedelta(minutes=1))
    again = w.client.post(f"/api/v1/partner/alerts/{alert['id']}/ack", headers=OPERATOR)

    assert first.status_code == 200, first.text
    assert first.json()["acked_by"] == "partner:alice"
    assert again.json()["acked_at"] == first.json()["acked_at"]
    with w.db.transaction() as s:
        audit = s.scalars(select(AuditLog).where(AuditLog.subject == f"alert:{alert['id']}")).all()
        assert [(a.actor, a.action) for a in audit] == [("partner:alice", "alert.ack")]


# --- rebalancing -----------------------------------------------------------------------


def test_a_full_kiosk_is_suggested_to_restock_an_empty_neighbour_and_the_task_shows_the_restock(
    world: World,
) -> None:
    w = world
    _stock(w.db, w.k1, 20, online=True)  # 20 > floor(0.75 x 22) = 16: gives 20 - 11 = 9
    _stock(w.db, w.k2, 0, online=True)  # 0 < ceil(0.25 x 22) = 6: needs 11
    _stock(w.db, w.k3, 22, online=True)  # partner 2's: never offered to partner 1

    r = w.client.get("/api/v1/partner/rebalancing/suggestions", headers=w.alice)

    assert r.status_code == 200, r.text
    body = r.json()
    assert [(m["from_kiosk_id"], m["to_kiosk_id"], m["quantity"]) for m in body["suggestions"]] == [
        (w.k1, w.k2, 9)
    ]
    assert (
        body["suggestions"][0]["distance_m"] == 951
    )  # 0.01 deg of longitude at 31.23 N: 1111.95 m x cos 31.23
    assert {p["kiosk_id"] for p in body["projections"]} == {w.k1, w.k2}

    move = body["suggestions"][0]
    created = w.client.post(
        "/api/v1/partner/rebalancing/tasks",
        json={"from_kiosk_id": w.k1, "to_kiosk_id": w.k2, "quantity": move["quantity"]},
        headers=w.alice,
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["status"], task["created_by"], task["partner_id"]) == (
        "open",
        "partner:alice",
        w.p1,
    )

    # Field staff take 9 umbrellas out of k1 and put them into k2: the kiosks report it.
    clock.advance(timedelta(minutes=20))
    now = clock.now()
    with w.db.transaction() as s:
        for i in range(9):
            s.add(
                SlotEventRecord(
                    kiosk_id=w.k1,
                    seq=100 + i,
                    slot_no=12 + i,
                    kind="out",
                    kiosk_time=now,
                    received_at=now,
                )
            )
            s.add(
                SlotEventRecord(
                    kiosk_id=w.k2,
                    seq=100 + i,
                    slot_no=1 + i,
                    kind="in",
                    kiosk_time=now,
                    received_at=now,
                )
            )
    _stock(w.db, w.k1, 11)
    _stock(w.db, w.k2, 9)

    done = w.client.post(f"/api/v1/partner/rebalancing/tasks/{task['id']}/done", headers=w.alice)

    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"
    assert done.json()["observed"] == {
        "from": {"kiosk_id": w.k1, "removed": 9, "inserted": 0, "umbrellas_now": 11},
        "to": {"kiosk_id": w.k2, "removed": 0, "inserted": 9, "umbrellas_now": 9},
    }
    twice = w.client.post(f"/api/v1/partner/rebalancing/tasks/{task['id']}/done", headers=w.alice)
    assert twice.status_code == 409
    listed = w.client.get("/api/v1/partner/rebalancing/tasks?status=done", headers=w.alice).json()
    assert [t["id"] for t in listed["items"]] == [task["id"]]
    assert w.client.get(
        "/api/v1/partner/rebalancing/tasks?status=open", headers=w.alice
    ).json() == {"items": []}
    after = w.client.get("/api/v1/partner/rebalancing/suggestions", headers=w.alice).json()
    assert after["suggestions"] == []
    with w.db.transaction() as s:
        actions = s.scalars(
            select(AuditLog.action).where(AuditLog.subject == f"rebalancing_task:{task['id']}")
        ).all()
        assert list(actions) == ["rebalancing.task_created", "rebalancing.task_done"]


def test_recent_rental_and_return_flows_move_the_projection(world: World) -> None:
    w = world
    _stock(w.db, w.k1, 11, online=True)
    _stock(w.db, w.k2, 11, online=True)
    with w.db.transaction() as s:
        # k1: 12 rentals in the last 6 hours (2/h out) -> 11 - 2 x 3 = 5 < 6: needs 11 - 5 = 6
        for i in range(12):
            _rental(
                s,
                100 + i,
                w.k1,
                NOW - timedelta(hours=5, minutes=i),
                returned_to=w.k2,
                returned_at=NOW - timedelta(hours=1),
            )
        # ... and all 12 came back to k2 (2/h in) -> 11 + 6 = 17 > 16: gives 17 - 11 = 6
    body = w.client.get("/api/v1/partner/rebalancing/suggestions", headers=w.alice).json()
    proj = {p["kiosk_id"]: p for p in body["projections"]}
    assert (proj[w.k1]["net_flow_per_hour"], proj[w.k1]["projected"]) == (-2.0, 5)
    assert (proj[w.k2]["net_flow_per_hour"], proj[w.k2]["projected"]) == (2.0, 17)
    assert [(m["from_kiosk_id"], m["to_kiosk_id"], m["quantity"]) for m in body["suggestions"]] == [
        (w.k2, w.k1, 6)
    ]


def test_bad_tasks_are_refused_and_change_nothing(world: World) -> None:
    w = world
    url = "/api/v1/partner/rebalancing/tasks"
    same = w.client.post(
        url, json={"from_kiosk_id": w.k1, "to_kiosk_id": w.k1, "quantity": 3}, headers=w.alice
    )
    assert (same.status_code, same.json()["error"]) == (400, "invalid_task")
    zero = w.client.post(
        url, json={"from_kiosk_id": w.k1, "to_kiosk_id": w.k2, "quantity": 0}, headers=w.alice
    )
    assert zero.status_code == 422
    mixed = w.client.post(
        url, json={"from_kiosk_id": w.k1, "to_kiosk_id": w.k3, "quantity": 3}, headers=OPERATOR
    )
    assert (mixed.status_code, mixed.json()["error"]) == (400, "invalid_task")
    op_suggest = w.client.get("/api/v1/partner/rebalancing/suggestions", headers=OPERATOR)
    assert (op_suggest.status_code, op_suggest.json()["error"]) == (422, "partner_required")
    assert w.client.get(url, headers=OPERATOR).json() == {"items": []}


# --- tenant isolation ------------------------------------------------------------------


def test_every_endpoint_refuses_another_partners_ids_with_not_found(world: World) -> None:
    w = world
    _stock(w.db, w.k1, 0, online=True)
    _stock(w.db, w.k2, 22, online=True)
    _stock(w.db, w.k3, 0, online=True)
    _evaluate(w.db)
    mine = _alerts(w, w.alice)["open"][0]["id"]
    theirs = _alerts(w, w.bob)["open"][0]["id"]
    task = w.client.post(
        "/api/v1/partner/rebalancing/tasks",
        json={"from_kiosk_id": w.k2, "to_kiosk_id": w.k1, "quantity": 5},
        headers=w.alice,
    ).json()["id"]
    p2 = f"?partner_id={w.p2}"
    refused = [
        ("GET", f"/api/v1/partner/dashboard{p2}", None),
        ("GET", f"/api/v1/partner/dashboard/stream{p2}", None),
        ("GET", f"/api/v1/partner/alerts{p2}", None),
        ("GET", f"/api/v1/partner/alerts/{theirs}", None),
        ("POST", f"/api/v1/partner/alerts/{theirs}/ack", None),
        ("GET", f"/api/v1/partner/rebalancing/suggestions{p2}", None),
        ("GET", f"/api/v1/partner/rebalancing/tasks{p2}", None),
        (
            "POST",
            "/api/v1/partner/rebalancing/tasks",
            {"from_kiosk_id": w.k3, "to_kiosk_id": w.k1, "quantity": 1},
        ),
        (
            "POST",
            "/api/v1/partner/rebalancing/tasks",
            {"from_kiosk_id": w.k1, "to_kiosk_id": w.k3, "quantity": 1},
        ),
    ]
    for method, path, body in refused:
        r = w.client.request(method, path, json=body, headers=w.alice)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    # Partner 2's user asking for partner 1's task and alert:
    for method, path in (
        ("GET", f"/api/v1/partner/rebalancing/tasks/{task}"),
        ("POST", f"/api/v1/partner/rebalancing/tasks/{task}/done"),
        ("GET", f"/api/v1/partner/alerts/{mine}"),
        ("POST", f"/api/v1/partner/alerts/{mine}/ack"),
    ):
        r = w.client.request(method, path, headers=w.bob)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert str(w.k1) not in r.text
    # Nothing changed: the task is open, the alert unacknowledged.
    got = w.client.get(f"/api/v1/partner/rebalancing/tasks/{task}", headers=w.alice).json()
    assert got["status"] == "open"
    assert (
        w.client.get(f"/api/v1/partner/alerts/{mine}", headers=w.alice).json()["acked_at"] is None
    )
    bob_tasks = w.client.get("/api/v1/partner/rebalancing/tasks", headers=w.bob).json()
    assert bob_tasks == {"items": []}


# --- live stream -----------------------------------------------------------------------


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    event = ""
    for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))


def test_the_stream_pushes_a_kiosk_going_offline_and_back_without_reloading(
    db: Database, tmp_path: Path
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(_settings(tmp_path, dashboard_stream_poll_s=0.2), db=db)
    with serve(app, sock), httpx.Client(base_url=base, timeout=10) as http:
        p1 = int(
            http.post(
                "/api/v1/partners", json={"name": "A", "region": "A"}, headers=OPERATOR
            ).json()["id"]
        )
        p2 = int(
            http.post(
                "/api/v1/partners", json={"name": "B", "region": "B"}, headers=OPERATOR
            ).json()["id"]
        )
        for kid, pid in (("K000001", p1), ("K000002", p1), ("K000009", p2)):
            body = {
                "id": kid,
                "name": kid,
                "partner_id": pid,
                "lat": 31.2,
                "lon": 121.4,
                "address": "x",
                "venue_type": "105",
            }
            assert http.post("/api/v1/kiosks", json=body, headers=OPERATOR).status_code == 201
        http.post(
            "/api/v1/users",
            headers=OPERATOR,
            json={
                "login": "alice",
                "password": "pw-alice-secret",
                "role": "partner",
                "partner_id": p1,
            },
        )
        token = log_in(http, "alice", "pw-alice-secret")["Authorization"].removeprefix("Bearer ")
        _stock(db, "K000001", 7, online=True)

        url = f"/api/v1/partner/dashboard/stream?token={token}"
        with http.stream("GET", url, timeout=httpx.Timeout(10, read=5)) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = _events(r.iter_lines())
            assert next(events) == ("ready", {"partner_id": p1})
            kind, first = next(events)
            assert (kind, first["full"]) == ("kiosks", True)
            assert [k["id"] for k in first["kiosks"]] == ["K000001", "K000002"]

            _stock(db, "K000001", 7, online=False)
            kind, flip = next(e for e in events if e[0] == "kiosks")
            assert flip["full"] is False
            assert [(k["id"], k["online"]) for k in flip["kiosks"]] == [("K000001", False)]
            assert flip["totals"]["online"] == 0

            _stock(db, "K000009", 3, online=True)  # another partner's kiosk: not pushed
            _stock(db, "K000001", 6, online=True)
            kind, back = next(e for e in events if e[0] == "kiosks")
            assert [(k["id"], k["online"], k["umbrellas"]) for k in back["kiosks"]] == [
                ("K000001", True, 6)
            ]
        refused = http.get("/api/v1/partner/dashboard/stream?token=nonsense")
        assert refused.status_code == 401
