"""Advertiser billing over HTTP (SPEC §4 Billing): prepaid orders after confirmation,
monthly statements that add up, payments recorded once, and tenants kept apart."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.app import create_app
from server.billing import jobs
from server.billing import service as billing
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.models import (
    AuditLog,
    Booking,
    BookingKiosk,
    BookingStatus,
    Creative,
    CreativeKind,
    CreativeStatus,
)
from server.models.delivery import AdCredit
from tests.accounts_env import Account, make_advertiser

OPERATOR = {"Authorization": "Bearer op-secret"}
SHANGHAI = "Asia/Shanghai"
#: 2026-12-01 00:30 in Shanghai.
DEC_1_SHANGHAI = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)


@pytest.fixture
def client(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, operator_token="op-secret", billing_timezone=SHANGHAI)
    with TestClient(create_app(settings, db=db)) as c:
        yield c


def _kiosk(client: TestClient, name: str, timezone: str = SHANGHAI) -> str:
    r = client.post(
        "/api/v1/partners", json={"name": f"Ops {name}", "region": "Hangzhou"}, headers=OPERATOR
    )
    assert r.status_code == 201, r.text
    body = {
        "name": name,
        "partner_id": r.json()["id"],
        "lat": 30.2741,
        "lon": 120.1551,
        "address": "Zhongshan N Rd, Hangzhou",
        "venue_type": "105",
        "timezone": timezone,
    }
    r = client.post("/api/v1/kiosks", json=body, headers=OPERATOR)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _confirmed_booking(
    db: Database, advertiser_id: int, start: date, end: date, prices: dict[str, int]
) -> int:
    """A booking confirmed the way bookings.service.confirm leaves it, billed in the same
    transaction through `on_booking_confirmed`."""
    now = clock.now()
    with db.transaction(immediate=True) as s:
        booking = Booking(
            advertiser_id=advertiser_id,
            name="Umbrellas at every exit",
            status=BookingStatus.CONFIRMED,
            spots_per_loop=2,
            start_date=start,
            end_date=end,
            dayparts="07-10",
            selection="{}",
            price_fen=sum(prices.values()),
            held_until=None,
            confirmed_at=now,
            ended_at=None,
            revision=2,
            created_at=now,
            updated_at=now,
        )
        s.add(booking)
        s.flush()
        days = (end - start).days + 1
        for kiosk_id, price in prices.items():
            s.add(
                BookingKiosk(booking_id=booking.id, kiosk_id=kiosk_id, days=days, price_fen=price)
            )
        s.flush()
        billing.on_booking_confirmed(s, booking)
        return booking.id


def _credit(db: Database, advertiser_id: int, booking_id: int, kiosk_id: str, fen: int) -> int:
    with db.transaction() as s:
        credit = AdCredit(
            advertiser_id=advertiser_id,
            booking_id=booking_id,
            kiosk_id=kiosk_id,
            local_date=date(2026, 11, 3),
            spots=4,
            amount_fen=fen,
            created_at=clock.now(),
        )
        s.add(credit)
        s.flush()
        return credit.id


def _adds_up(invoice: dict[str, Any]) -> None:
    assert sum(line["amount_fen"] for line in invoice["lines"]) == invoice["subtotal_fen"]
    assert sum(c["amount_fen"] for c in invoice["credits"]) == invoice["credits_fen"]
    assert invoice["subtotal_fen"] - invoice["credits_fen"] == invoice["total_fen"] >= 0


@pytest.fixture
def acme(client: TestClient) -> Account:
    return make_advertiser(client, "Acme", billing_mode="prepaid", operator_headers=OPERATOR)


@pytest.fixture
def globex(client: TestClient) -> Account:
    return make_advertiser(client, "Globex", billing_mode="monthly", operator_headers=OPERATOR)


def test_a_prepaid_order_appears_after_confirmation_with_credits_applied(
    client: TestClient, db: Database, acme: Account
) -> None:
    k1, k2 = _kiosk(client, "West Lake B"), _kiosk(client, "Wulin Square A")
    first = _confirmed_booking(db, acme.id, date(2026, 11, 2), date(2026, 11, 3), {k1: 400})
    credit_id = _credit(db, acme.id, first, k1, 150)
    second = _confirmed_booking(
        db, acme.id, date(2026, 12, 1), date(2026, 12, 10), {k1: 6_000, k2: 4_000}
    )

    listed = client.get("/api/v1/ads/invoices", headers=acme.headers)
    assert listed.status_code == 200, listed.text
    assert [(i["booking_id"], i["kind"]) for i in listed.json()] == [
        (second, "prepaid_order"),
        (first, "prepaid_order"),
    ]
    order = listed.json()[0]
    assert order["issued_on"] == order["due_on"]

    detail = client.get(f"/api/v1/ads/invoices/{order['id']}", headers=acme.headers).json()
    assert [(x["kiosk_id"], x["days"], x["amount_fen"]) for x in detail["lines"]] == sorted(
        [(k1, 10, 6_000), (k2, 10, 4_000)]
    )
    assert [c["id"] for c in detail["credits"]] == [credit_id]
    assert (detail["subtotal_fen"], detail["credits_fen"], detail["total_fen"]) == (
        10_000,
        150,
        9_850,
    )
    _adds_up(detail)

    credits = client.get("/api/v1/ads/credits", headers=acme.headers).json()
    assert [(c["id"], c["state"], c["invoice_id"]) for c in credits] == [
        (credit_id, "applied", order["id"])
    ]


def _creative(db: Database, advertiser_id: int) -> int:
    now = clock.now()
    with db.transaction() as s:
        creative = Creative(
            advertiser_id=advertiser_id,
            title="雨天出行，就近还伞",
            kind=CreativeKind.IMAGE,
            duration_ms=10_000,
            media_url="/api/v1/media/" + "ab" * 32,
            sha256="ab" * 32,
            status=CreativeStatus.APPROVED,
            created_at=now,
            updated_at=now,
        )
        s.add(creative)
        s.flush()
        return creative.id


def test_confirming_a_booking_over_http_issues_its_prepaid_order_once(
    client: TestClient, db: Database, acme: Account
) -> None:
    k1, k2 = _kiosk(client, "West Lake B"), _kiosk(client, "Wulin Square A")
    today = clock.now().date()
    body = {
        "name": "First rain of winter",
        "spots_per_loop": 1,
        "start_date": (today + timedelta(days=3)).isoformat(),
        "end_date": (today + timedelta(days=5)).isoformat(),
        "dayparts": "07-10",
        "selection": {"kiosk_ids": [k1, k2]},
        "creative_ids": [_creative(db, acme.id)],
    }
    created = client.post("/api/v1/ads/bookings", json=body, headers=acme.headers)
    assert created.status_code == 201, created.text
    booking = created.json()
    assert client.get("/api/v1/ads/invoices", headers=acme.headers).json() == []

    for _ in range(2):
        r = client.post(f"/api/v1/ads/bookings/{booking['id']}/confirm", headers=acme.headers)
        assert r.status_code == 200, r.text

    [order] = client.get("/api/v1/ads/invoices", headers=acme.headers).json()
    assert (order["kind"], order["booking_id"]) == ("prepaid_order", booking["id"])
    assert order["subtotal_fen"] == order["total_fen"] == booking["price_fen"] > 0
    detail = client.get(f"/api/v1/ads/invoices/{order['id']}", headers=acme.headers).json()
    assert sorted((x["kiosk_id"], x["days"], x["amount_fen"]) for x in detail["lines"]) == sorted(
        (k["kiosk_id"], k["days"], k["price_fen"]) for k in booking["kiosks"]
    )
    _adds_up(detail)


def test_the_monthly_statement_adds_up_and_downloads_as_csv(
    client: TestClient, db: Database, globex: Account
) -> None:
    k1, k2 = _kiosk(client, "Metro A"), _kiosk(client, "Harbour", "Asia/Hong_Kong")
    booking = _confirmed_booking(
        db, globex.id, date(2026, 11, 21), date(2026, 12, 10), {k1: 20_001, k2: 9_999}
    )
    _credit(db, globex.id, booking, k1, 700)
    assert client.get("/api/v1/ads/invoices", headers=globex.headers).json() == []
    with db.transaction(immediate=True) as s:
        assert jobs.issue_monthly_statements(s, DEC_1_SHANGHAI, billing_timezone=SHANGHAI) == 1

    [statement] = client.get("/api/v1/ads/invoices", headers=globex.headers).json()
    assert statement["kind"] == "monthly_statement"
    assert (statement["issued_on"], statement["due_on"]) == ("2026-12-01", "2026-12-20")
    detail = client.get(f"/api/v1/ads/invoices/{statement['id']}", headers=globex.headers).json()
    _adds_up(detail)
    # 20 days, 10 of them in November: 20_001 = 20 x 1_000 + 1 and 9_999 = 20 x 499 + 19;
    # the first day (November 21st) carries the remainder.
    assert sorted(x["amount_fen"] for x in detail["lines"]) == [4_990 + 19, 10_000 + 1]
    assert detail["total_fen"] == 15_010 - 700

    r = client.get(f"/api/v1/ads/invoices/{statement['id']}.csv", headers=globex.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["kind"] for row in rows] == [
        "monthly_statement",
        "monthly_statement",
        "credit",
        "total",
    ]
    assert rows[-1]["amount_yuan"] == "143.10"
    assert rows[2]["amount_yuan"] == "-7.00"


def test_marking_an_invoice_paid_twice_records_it_once(
    client: TestClient, db: Database, acme: Account
) -> None:
    k1 = _kiosk(client, "West Lake B")
    booking = _confirmed_booking(db, acme.id, date(2026, 12, 1), date(2026, 12, 2), {k1: 900})
    [invoice] = client.get("/api/v1/ads/invoices", headers=acme.headers).json()
    assert invoice["status"] == "issued"
    url = f"/api/v1/ops/invoices/{invoice['id']}/paid"

    first = client.post(url, json={"payment_reference": "BANK-20261201-0042"}, headers=OPERATOR)
    assert first.status_code == 200, first.text
    again = client.post(url, json={"payment_reference": "BANK-20261201-0042"}, headers=OPERATOR)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["status"] == "paid"
    assert first.json()["booking_id"] == booking

    other = client.post(url, json={"payment_reference": "BANK-OTHER"}, headers=OPERATOR)
    assert other.status_code == 409
    assert other.json()["error"] == "invoice_already_paid"

    with db.transaction() as s:
        audit = s.scalars(select(AuditLog).where(AuditLog.subject == f"invoice:{invoice['id']}"))
        assert [(a.action, a.reason) for a in audit] == [
            ("invoice.paid", "payment BANK-20261201-0042")
        ]
    mine = client.get(f"/api/v1/ads/invoices/{invoice['id']}", headers=acme.headers).json()
    assert (mine["status"], mine["payment_reference"]) == ("paid", "BANK-20261201-0042")


def test_a_bad_payment_changes_nothing(client: TestClient, db: Database, acme: Account) -> None:
    k1 = _kiosk(client, "West Lake B")
    _confirmed_booking(db, acme.id, date(2026, 12, 1), date(2026, 12, 2), {k1: 900})
    [invoice] = client.get("/api/v1/ads/invoices", headers=acme.headers).json()
    url = f"/api/v1/ops/invoices/{invoice['id']}/paid"
    assert client.post(url, json={"payment_reference": ""}, headers=OPERATOR).status_code == 422
    r = client.post(url, json={"payment_reference": "   "}, headers=OPERATOR)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_payment_reference")
    r = client.post(
        "/api/v1/ops/invoices/999999/paid", json={"payment_reference": "X"}, headers=OPERATOR
    )
    assert (r.status_code, r.json()["error"]) == (404, "invoice_not_found")
    assert client.post(url, json={"payment_reference": "X"}).status_code == 401
    mine = client.get(f"/api/v1/ads/invoices/{invoice['id']}", headers=acme.headers).json()
    assert mine["status"] == "issued"


def test_an_advertiser_cannot_see_or_pay_another_advertisers_invoices_or_credits(
    client: TestClient, db: Database, acme: Account, globex: Account
) -> None:
    k1 = _kiosk(client, "West Lake B")
    booking = _confirmed_booking(db, acme.id, date(2026, 12, 1), date(2026, 12, 2), {k1: 900})
    _credit(db, acme.id, booking, k1, 100)
    [invoice] = client.get("/api/v1/ads/invoices", headers=acme.headers).json()

    assert client.get("/api/v1/ads/invoices", headers=globex.headers).json() == []
    assert client.get("/api/v1/ads/credits", headers=globex.headers).json() == []
    for suffix in ("", ".csv"):
        theirs = client.get(f"/api/v1/ads/invoices/{invoice['id']}{suffix}", headers=globex.headers)
        missing = client.get(f"/api/v1/ads/invoices/999999{suffix}", headers=globex.headers)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["error"] == missing.json()["error"] == "invoice_not_found"
    # Operator endpoints are not for advertisers, not even their own invoices.
    assert client.get("/api/v1/ops/invoices", headers=acme.headers).status_code == 403
    r = client.post(
        f"/api/v1/ops/invoices/{invoice['id']}/paid",
        json={"payment_reference": "SELF-PAID"},
        headers=acme.headers,
    )
    assert r.status_code == 403
    # Nor are the advertiser endpoints an operator's way in without a tenant.
    assert client.get("/api/v1/ads/invoices", headers=OPERATOR).status_code == 403


def test_operators_list_invoices_by_advertiser_and_status(
    client: TestClient, db: Database, acme: Account, globex: Account
) -> None:
    k1 = _kiosk(client, "West Lake B")
    _confirmed_booking(db, acme.id, date(2026, 11, 1), date(2026, 11, 2), {k1: 100})
    _confirmed_booking(db, acme.id, date(2026, 11, 3), date(2026, 11, 4), {k1: 200})
    _confirmed_booking(db, globex.id, date(2026, 11, 5), date(2026, 11, 6), {k1: 300})
    with db.transaction(immediate=True) as s:
        jobs.issue_monthly_statements(s, DEC_1_SHANGHAI, billing_timezone=SHANGHAI)
    everything = client.get("/api/v1/ops/invoices", headers=OPERATOR).json()
    assert sorted(i["subtotal_fen"] for i in everything) == [100, 200, 300]

    first = max(everything, key=lambda i: -i["id"])
    paid = client.post(
        f"/api/v1/ops/invoices/{first['id']}/paid",
        json={"payment_reference": "WIRE-1"},
        headers=OPERATOR,
    )
    assert paid.status_code == 200

    def ids(**params: object) -> list[int]:
        r = client.get("/api/v1/ops/invoices", params=params, headers=OPERATOR)
        assert r.status_code == 200, r.text
        return sorted(i["id"] for i in r.json())

    acme_ids = ids(advertiser_id=acme.id)
    assert len(acme_ids) == 2
    assert ids(advertiser_id=acme.id, status="issued") == [i for i in acme_ids if i != first["id"]]
    assert ids(status="paid") == [first["id"]]
    assert len(ids(kind="monthly_statement")) == 1
    newest = client.get("/api/v1/ops/invoices", params={"limit": 1}, headers=OPERATOR).json()
    assert [i["id"] for i in newest] == [max(i["id"] for i in everything)]
    bad = client.get("/api/v1/ops/invoices", params={"status": "overdue"}, headers=OPERATOR)
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_request")
    detail = client.get(f"/api/v1/ops/invoices/{first['id']}", headers=OPERATOR).json()
    _adds_up(detail)
