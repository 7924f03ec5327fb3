"""Revenue-share HTTP API (SPEC §5): partners see only their own statements (another
partner's ids answer 404), operators see all, set the terms (audited) and pay through the
WeChat stand-in's profit sharing, once however often asked."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.app import create_app
from server.config import Settings
from server.core.db import Database
from server.core.http import AppServices
from server.models import AuditLog
from server.payments.wechatpay import WeChatPayClient
from server.revenue import jobs
from server.wechat.standin import WeChatStandIn
from tests.accounts_env import Account, log_in, make_advertiser
from tests.integration.test_partner_statements import at_shanghai, forfeiture_at, move_clock_to

OPERATOR = {"Authorization": "Bearer op-secret"}
PARTNER_MCHID = "1900000110"


@dataclass(frozen=True)
class Tenant:
    partner_id: int
    kiosk_id: str
    user: Account


@pytest.fixture
def client(db: Database, tmp_path: Path, standin: WeChatStandIn) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, operator_token="op-secret")
    with WeChatPayClient(standin.pay_config()) as pay:
        services = AppServices(settings=settings, db=db, wechatpay=pay)
        with TestClient(create_app(settings, services=services)) as c:
            yield c


def tenant(client: TestClient, name: str) -> Tenant:
    r = client.post("/api/v1/partners", json={"name": name, "region": name}, headers=OPERATOR)
    assert r.status_code == 201, r.text
    partner_id = int(r.json()["id"])
    r = client.post(
        "/api/v1/kiosks",
        json={
            "name": f"{name} metro exit B",
            "partner_id": partner_id,
            "lat": 30.2741,
            "lon": 120.1551,
            "address": "Zhongshan N Rd",
            "venue_type": "105",
        },
        headers=OPERATOR,
    )
    assert r.status_code == 201, r.text
    kiosk_id = str(r.json()["id"])
    login, password = f"{name.lower()}-staff", f"pw-{name}-secret"
    r = client.post(
        "/api/v1/users",
        json={"login": login, "password": password, "role": "partner", "partner_id": partner_id},
        headers=OPERATOR,
    )
    assert r.status_code == 201, r.text
    return Tenant(
        partner_id, kiosk_id, Account(int(r.json()["id"]), login, log_in(client, login, password))
    )


@pytest.fixture
def stated(db: Database, client: TestClient) -> tuple[Tenant, Tenant]:
    """Partners Hangzhou (30 %, one forfeiture in November) and Ningbo (nothing), with
    November stated."""
    move_clock_to(at_shanghai(2026, 11, 2))
    hz, nb = tenant(client, "Hangzhou"), tenant(client, "Ningbo")
    r = client.patch(
        f"/api/v1/partners/{hz.partner_id}",
        json={"revenue_share_bp": 3000, "settlement_cycle": "monthly"},
        headers=OPERATOR,
    )
    assert r.status_code == 200, r.text
    forfeiture_at(db, at_shanghai(2026, 11, 10), hz.kiosk_id, "rider-hz")
    move_clock_to(at_shanghai(2026, 12, 1, 2, 0))
    with db.transaction(immediate=True) as s:
        assert jobs.issue_statements(s, at_shanghai(2026, 12, 1, 2, 0)) == 2
    # A month later the staff's tokens have expired: they log in again.
    return relogin(client, hz, "Hangzhou"), relogin(client, nb, "Ningbo")


def relogin(client: TestClient, who: Tenant, name: str) -> Tenant:
    headers = log_in(client, who.user.login, f"pw-{name}-secret")
    return Tenant(who.partner_id, who.kiosk_id, Account(who.user.id, who.user.login, headers))


def only_statement(client: TestClient, who: Tenant) -> dict[str, object]:
    r = client.get("/api/v1/partner/statements", headers=who.user.headers)
    assert r.status_code == 200, r.text
    (found,) = r.json()
    return dict(found)


def test_a_partner_sees_its_own_statement_with_its_kiosk_lines(
    client: TestClient, stated: tuple[Tenant, Tenant]
) -> None:
    hz, _ = stated
    mine = only_statement(client, hz)
    assert (mine["partner_id"], mine["period_start"], mine["period_end"]) == (
        hz.partner_id,
        "2026-11-01",
        "2026-11-30",
    )
    assert (mine["forfeited_fen"], mine["share_fen"], mine["status"]) == (3000, 900, "issued")
    r = client.get(f"/api/v1/partner/statements/{mine['id']}", headers=hz.user.headers)
    assert r.status_code == 200, r.text
    assert r.json()["lines"] == [
        {"kiosk_id": hz.kiosk_id, "ad_revenue_fen": 0, "forfeited_fen": 3000, "credits_fen": 0}
    ]


def test_another_partners_statement_ids_answer_404_on_every_endpoint(
    client: TestClient, stated: tuple[Tenant, Tenant]
) -> None:
    hz, nb = stated
    theirs = only_statement(client, hz)["id"]
    assert only_statement(client, nb)["partner_id"] == nb.partner_id
    for path in (
        f"/api/v1/partner/statements/{theirs}",
        f"/api/v1/partner/statements/{theirs}.csv",
    ):
        r = client.get(path, headers=nb.user.headers)
        assert r.status_code == 404, path
        assert r.json()["error"] == "statement_not_found"
    # Asking for another partner's list gives one's own.
    r = client.get(
        "/api/v1/partner/statements", params={"partner_id": hz.partner_id}, headers=nb.user.headers
    )
    assert [s["partner_id"] for s in r.json()] == [nb.partner_id]
    # Partners neither pay statements nor change terms.
    r = client.post(f"/api/v1/ops/partner-statements/{theirs}/pay", headers=nb.user.headers)
    assert r.status_code == 403
    r = client.patch(
        f"/api/v1/partners/{nb.partner_id}",
        json={"revenue_share_bp": 9000},
        headers=nb.user.headers,
    )
    assert r.status_code == 403


def test_advertisers_and_anonymous_callers_see_no_statements(
    client: TestClient, stated: tuple[Tenant, Tenant]
) -> None:
    hz, _ = stated
    statement_id = only_statement(client, hz)["id"]
    advertiser = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    for headers, status in ((advertiser.headers, 403), ({}, 401)):
        assert client.get("/api/v1/partner/statements", headers=headers).status_code == status
        r = client.get(f"/api/v1/partner/statements/{statement_id}", headers=headers)
        assert r.status_code == status


def test_operators_see_every_partners_statements(
    client: TestClient, stated: tuple[Tenant, Tenant]
) -> None:
    hz, nb = stated
    r = client.get("/api/v1/partner/statements", headers=OPERATOR)
    assert sorted(s["partner_id"] for s in r.json()) == sorted([hz.partner_id, nb.partner_id])
    r = client.get(
        "/api/v1/partner/statements", params={"partner_id": nb.partner_id}, headers=OPERATOR
    )
    assert [s["partner_id"] for s in r.json()] == [nb.partner_id]


def test_the_statement_downloads_as_csv_with_exact_yuan(
    client: TestClient, stated: tuple[Tenant, Tenant]
) -> None:
    hz, _ = stated
    statement_id = only_statement(client, hz)["id"]
    r = client.get(f"/api/v1/partner/statements/{statement_id}.csv", headers=hz.user.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == [
        "statement_id",
        "kiosk_id",
        "ad_revenue_yuan",
        "forfeited_yuan",
        "credits_yuan",
    ]
    sid = str(statement_id)
    assert rows[1:] == [
        [sid, hz.kiosk_id, "0.00", "30.00", "0.00"],
        [sid, "total", "0.00", "30.00", "0.00"],
        [sid, "carried_in", "0.00", "", ""],
        [sid, "base", "30.00", "", ""],
        [sid, "rate_bp", "3000", "", ""],
        [sid, "share", "9.00", "", ""],
    ]


def test_operators_change_terms_with_an_audit_entry_and_bad_terms_change_nothing(
    db: Database, client: TestClient
) -> None:
    nb = tenant(client, "Ningbo")
    r = client.patch(
        f"/api/v1/partners/{nb.partner_id}",
        json={
            "revenue_share_bp": 2500,
            "settlement_cycle": "weekly",
            "payout_mchid": PARTNER_MCHID,
        },
        headers=OPERATOR,
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["revenue_share_bp"],
        r.json()["settlement_cycle"],
        r.json()["payout_mchid"],
    ) == (
        2500,
        "weekly",
        PARTNER_MCHID,
    )
    for bad in (
        {"revenue_share_bp": 10_001},
        {"revenue_share_bp": -1},
        {"settlement_cycle": "daily"},
        {"payout_mchid": "abc"},
    ):
        r = client.patch(f"/api/v1/partners/{nb.partner_id}", json=bad, headers=OPERATOR)
        assert r.status_code == 422, bad
    assert (
        client.patch(
            "/api/v1/partners/999999", json={"revenue_share_bp": 1}, headers=OPERATOR
        ).status_code
        == 404
    )
    with db.transaction() as s:
        audit = s.scalars(
            select(AuditLog).where(AuditLog.subject == f"partner:{nb.partner_id}")
        ).all()
    # The registration is audited too; the refused changes left nothing.
    assert [a.action for a in audit] == ["partner.register", "partner.terms_changed"]
    assert "revenue_share_bp 0 -> 2500" in audit[1].detail


def test_an_operator_pays_a_statement_once_however_often_asked(
    client: TestClient, stated: tuple[Tenant, Tenant], standin: WeChatStandIn
) -> None:
    hz, nb = stated
    statement_id = only_statement(client, hz)["id"]
    r = client.post(f"/api/v1/ops/partner-statements/{statement_id}/pay", headers=OPERATOR)
    assert (r.status_code, r.json()["error"]) == (409, "payout_account_missing")
    client.patch(
        f"/api/v1/partners/{hz.partner_id}", json={"payout_mchid": PARTNER_MCHID}, headers=OPERATOR
    )
    answers = [
        client.post(f"/api/v1/ops/partner-statements/{statement_id}/pay", headers=OPERATOR)
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert {a.json()["status"] for a in answers} == {"paid"}
    assert len(standin.profit_sharing_orders) == 1
    assert next(iter(standin.profit_sharing_orders.values())).amount == 900
    # Nothing to pay, and no such statement.
    empty = only_statement(client, nb)["id"]
    r = client.post(f"/api/v1/ops/partner-statements/{empty}/pay", headers=OPERATOR)
    assert (r.status_code, r.json()["error"]) == (409, "nothing_to_pay")
    r = client.post("/api/v1/ops/partner-statements/999999/pay", headers=OPERATOR)
    assert (r.status_code, r.json()["error"]) == (404, "statement_not_found")
