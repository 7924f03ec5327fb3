"""Everything an operator changes over the API is in the audit log (issue 5), on SQLite and
PostgreSQL: one row per write, in the write's own transaction, naming the operator's login
(`operator-token` for the shared token), never a secret. Commands to kiosks need a broker:
tests/e2e/test_operator_api.py checks theirs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.app import create_app
from server.config import Settings
from server.core.db import Database
from server.models import AuditLog
from tests.accounts_env import make_advertiser, make_operator
from tests.api.test_billing_api import _confirmed_booking
from tests.api.test_bookings_api import _kiosk, _partner

TOKEN = {"Authorization": "Bearer op-secret"}


@dataclass(frozen=True)
class Operator:
    headers: dict[str, str]
    actor: str


@pytest.fixture
def client(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, operator_token="op-secret")
    with TestClient(create_app(settings, db=db)) as c:
        yield c


@pytest.fixture(params=["operator user", "shared operator token"])
def operator(request: pytest.FixtureRequest, client: TestClient) -> Operator:
    if request.param == "shared operator token":
        return Operator(TOKEN, "operator-token")
    ops = make_operator(client, "ops-alice", operator_headers=TOKEN)
    return Operator(ops.headers, "ops-alice")


def _audit(db: Database, action: str | None = None) -> list[AuditLog]:
    with db.transaction() as s:
        query = select(AuditLog).order_by(AuditLog.id)
        if action is not None:
            query = query.where(AuditLog.action == action)
        rows = list(s.scalars(query))
        s.expunge_all()
        return rows


def _only(db: Database, action: str) -> AuditLog:
    rows = _audit(db, action)
    assert len(rows) == 1, [(r.action, r.subject, r.detail) for r in rows]
    return rows[0]


def _ok(r: Any, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return dict(r.json())


def test_registering_a_partner_is_audited_with_the_operator(
    client: TestClient, db: Database, operator: Operator
) -> None:
    body = {"name": "Hangzhou Ops", "region": "Hangzhou"}
    created = _ok(client.post("/api/v1/partners", json=body, headers=operator.headers), 201)

    row = _only(db, "partner.register")
    assert (row.actor, row.subject) == (operator.actor, f"partner:{created['id']}")
    assert "Hangzhou Ops" in row.detail


def test_changing_partner_terms_is_audited_with_the_operator(
    client: TestClient, db: Database, operator: Operator
) -> None:
    body = {"name": "Hangzhou Ops", "region": "Hangzhou"}
    partner = _ok(client.post("/api/v1/partners", json=body, headers=TOKEN), 201)
    terms = {"revenue_share_bp": 2500}
    url = f"/api/v1/partners/{partner['id']}"
    _ok(client.patch(url, json=terms, headers=operator.headers))

    row = _only(db, "partner.terms_changed")
    assert (row.actor, row.subject) == (operator.actor, f"partner:{partner['id']}")
    assert row.detail == f"revenue_share_bp {partner['revenue_share_bp']} -> 2500"


def test_registering_a_kiosk_is_audited_without_its_password(
    client: TestClient, db: Database, operator: Operator
) -> None:
    partner_id = _partner(client, "Hangzhou Ops", "Hangzhou")
    body = {
        "id": "K000042",
        "name": "West Lake B",
        "partner_id": partner_id,
        "lat": 30.2741,
        "lon": 120.1551,
        "address": "Hubin Rd",
        "venue_type": "105",
    }
    created = _ok(client.post("/api/v1/kiosks", json=body, headers=operator.headers), 201)

    row = _only(db, "kiosk.register")
    assert (row.actor, row.subject) == (operator.actor, "kiosk:K000042")
    assert f"partner:{partner_id}" in row.detail
    assert created["mqtt_password"] not in f"{row.detail} {row.reason}"


def test_rotating_a_kiosk_password_is_audited_without_the_password(
    client: TestClient, db: Database, operator: Operator
) -> None:
    kiosk_id = _kiosk(client, "K000042", _partner(client, "Hangzhou Ops", "Hangzhou"))
    rotated = _ok(client.post(f"/api/v1/kiosks/{kiosk_id}/password", headers=operator.headers))

    row = _only(db, "kiosk.password_rotate")
    assert (row.actor, row.subject) == (operator.actor, f"kiosk:{kiosk_id}")
    assert rotated["mqtt_password"] not in f"{row.detail} {row.reason}"


def test_changing_a_kiosks_ad_screen_is_audited_with_old_and_new_values(
    client: TestClient, db: Database, operator: Operator
) -> None:
    kiosk_id = _kiosk(client, "K000042", _partner(client, "Hangzhou Ops", "Hangzhou"))
    body = {"loop_seconds": 120, "open_hour": 7}
    _ok(client.patch(f"/api/v1/kiosks/{kiosk_id}/ad-screen", json=body, headers=operator.headers))

    row = _only(db, "kiosk.ad_screen")
    assert (row.actor, row.subject) == (operator.actor, f"kiosk:{kiosk_id}")
    assert row.detail == "loop 60/10 s -> 120/10 s, hours 0-24 -> 7-24"


def test_setting_a_venue_price_is_audited_with_old_and_new_price(
    client: TestClient, db: Database, operator: Operator
) -> None:
    before = {
        p["venue_type"]: p["fen_per_spot_day"]
        for p in client.get("/api/v1/ads/prices", headers=operator.headers).json()
    }
    body = {"fen_per_spot_day": 1234}
    r = client.put("/api/v1/ops/ads/prices/105", json=body, headers=operator.headers)
    assert r.status_code == 200, r.text

    row = _only(db, "ad_price.set")
    assert (row.actor, row.subject) == (operator.actor, "venue_type:105")
    assert row.detail == f"fen_per_spot_day {before['105']} -> 1234"


def test_registering_an_advertiser_is_audited_without_its_password(
    client: TestClient, db: Database, operator: Operator
) -> None:
    acme = make_advertiser(client, "Acme", operator_headers=operator.headers)

    row = _only(db, "advertiser.register")
    assert (row.actor, row.subject) == (operator.actor, f"advertiser:{acme.id}")
    assert acme.login in row.detail
    assert "pw-Acme-secret" not in f"{row.detail} {row.reason}"


def test_creating_a_user_is_audited_without_its_password(
    client: TestClient, db: Database, operator: Operator
) -> None:
    partner_id = _partner(client, "Hangzhou Ops", "Hangzhou")
    body = {
        "login": "hz-staff",
        "password": "pw-hz-staff-secret",
        "role": "partner",
        "partner_id": partner_id,
    }
    user = _ok(client.post("/api/v1/users", json=body, headers=operator.headers), 201)

    rows = [r for r in _audit(db, "user.create") if r.subject == f"user:{user['id']}"]
    assert [(r.actor, r.detail) for r in rows] == [
        (operator.actor, f"login 'hz-staff', role partner, partner:{partner_id}")
    ]
    assert all("pw-hz-staff-secret" not in r.detail for r in _audit(db))


def test_marking_an_invoice_paid_is_audited_with_the_operator(
    client: TestClient, db: Database, operator: Operator
) -> None:
    acme = make_advertiser(client, "Acme", operator_headers=TOKEN)
    kiosk_id = _kiosk(client, "K000042", _partner(client, "Hangzhou Ops", "Hangzhou"))
    _confirmed_booking(db, acme.id, date(2026, 12, 1), date(2026, 12, 2), {kiosk_id: 400})
    (invoice,) = client.get("/api/v1/ads/invoices", headers=acme.headers).json()

    body = {"payment_reference": "BANK-1"}
    url = f"/api/v1/ops/invoices/{invoice['id']}/paid"
    _ok(client.post(url, json=body, headers=operator.headers))

    row = _only(db, "invoice.paid")
    assert (row.actor, row.subject) == (operator.actor, f"invoice:{invoice['id']}")


def test_an_operator_write_that_fails_leaves_no_audit_row(
    client: TestClient, db: Database, operator: Operator
) -> None:
    before = len(_audit(db))
    partner_id = _partner(client, "Hangzhou Ops", "Hangzhou")
    kiosk = {
        "name": "Nowhere",
        "partner_id": 999_999,
        "lat": 30.0,
        "lon": 120.0,
        "address": "x",
        "venue_type": "105",
    }
    refused = [
        client.post("/api/v1/kiosks", json=kiosk, headers=operator.headers),
        client.post("/api/v1/partners", json={"name": "Hangzhou Ops", "region": "x"}),
        client.post(
            "/api/v1/partners",
            json={"name": "Hangzhou Ops", "region": "x"},
            headers=operator.headers,
        ),
        client.patch("/api/v1/kiosks/K999999/ad-screen", json={}, headers=operator.headers),
        client.post("/api/v1/kiosks/K999999/password", headers=operator.headers),
        client.put("/api/v1/ops/ads/prices/999", json={"fen_per_spot_day": 1}, headers=TOKEN),
    ]

    assert [r.status_code for r in refused] == [404, 401, 409, 404, 404, 400]
    assert [(r.action, r.subject) for r in _audit(db)[before:]] == [
        ("partner.register", f"partner:{partner_id}")
    ]
