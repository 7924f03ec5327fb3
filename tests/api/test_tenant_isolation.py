"""Tenant isolation over HTTP (issue 5, "Accounts and isolation"), on SQLite and PostgreSQL.

Every route of the app is classified in `ROUTES` by who may call it; a new endpoint that
is not in the table fails `test_every_route_declares_who_may_call_it`. From the table:

- every caller kind a route does not admit (no credentials, a rider, an advertiser's user,
  a partner's user, an operator) is refused with 401/403, and nothing in the database
  changes;
- every route naming a tenant's resource is called by the *other* tenant of the same kind
  with the first one's real id and answers 404 (ids do not leak), while the owner still
  sees the resource as it was;
- every list shows the owner its ids and the other tenant none of them.

The world (two advertisers, two partners, two riders, each with real data) is built once per
database backend: the refusals change nothing by construction, and each check re-reads
what it guards, so the cases can share it. Its PostgreSQL database is its own (not the
session's, which other tests truncate).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from server.alerts import jobs as alert_jobs
from server.app import create_app
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.ledger import service as ledger
from server.models import Base, DepositPayment, KioskState, Rental, Rider
from server.payments.wechatpay import WeChatPayClient
from server.revenue import jobs as revenue_jobs
from server.runtime import attach_wechat
from server.wechat.miniprogram import MiniProgramClient
from tests.accounts_env import Account, make_advertiser
from tests.api.test_bookings_api import _creative, _kiosk, _partner
from tests.api.test_partner_dashboard import _partner_user, _rental
from tests.services import throwaway_pg_database
from tests.wechat_env import make_standin

OPERATOR = {"Authorization": "Bearer op-secret"}

# -- who may call what ------------------------------------------------------------------------

PUBLIC = "public"
RIDER = "rider"
ADVERTISER = "advertiser"
PARTNER = "partner"
OPERATOR_ROLE = "operator"
USERS = frozenset({ADVERTISER, PARTNER, OPERATOR_ROLE})
ROLES = (RIDER, ADVERTISER, PARTNER, OPERATOR_ROLE)

_P = frozenset({PUBLIC})
_R = frozenset({RIDER})
_A = frozenset({ADVERTISER})
_PO = frozenset({PARTNER, OPERATOR_ROLE})
_AO = frozenset({ADVERTISER, OPERATOR_ROLE})
_O = frozenset({OPERATOR_ROLE})

#: (method, path) -> who may call it. `public` routes need no credentials (the public
#: kiosk map, GBFS, media files kiosks download, WeChat Pay's signed notifications, the
#: console's static pages, logins).
ROUTES: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/api/v1/auth/login"): _P,
    ("GET", "/api/v1/auth/me"): USERS,
    ("POST", "/api/v1/advertisers"): _O,
    ("GET", "/api/v1/advertisers"): _O,
    # Operators create anyone; an advertiser's user its own colleagues.
    ("POST", "/api/v1/users"): _AO,
    ("POST", "/api/v1/partners"): _O,
    # Names and regions; the revenue-share terms only to operators and the partner's own.
    ("GET", "/api/v1/partners"): _P,
    ("PATCH", "/api/v1/partners/{partner_id}"): _O,
    ("GET", "/api/v1/kiosks"): _P,
    ("GET", "/api/v1/kiosks/nearby"): _P,
    ("GET", "/api/v1/kiosks/{kiosk_id}"): _P,
    ("POST", "/api/v1/kiosks"): _O,
    ("PATCH", "/api/v1/kiosks/{kiosk_id}/ad-screen"): _O,
    ("POST", "/api/v1/kiosks/{kiosk_id}/password"): _O,
    ("POST", "/api/v1/kiosks/{kiosk_id}/commands"): _O,
    ("GET", "/api/v1/uplinks/stats"): _O,
    ("POST", "/api/v1/riders/login"): _P,
    ("GET", "/api/v1/riders/me"): _R,
    ("POST", "/api/v1/deposits"): _R,
    ("POST", "/api/v1/deposits/{payment_id}/refresh"): _R,
    ("POST", "/api/v1/payments/wechat/notify"): _P,
    ("POST", "/api/v1/payments/wechat/refund-notify"): _P,
    ("POST", "/api/v1/deposits/withdraw"): _R,
    ("GET", "/api/v1/deposits/refund"): _R,
    ("GET", "/api/v1/deposit-refunds"): _O,
    ("GET", "/api/v1/riders/me/notifications"): _R,
    ("POST", "/api/v1/rentals"): _R,
    ("GET", "/api/v1/rentals/current"): _R,
    ("GET", "/api/v1/rentals"): _R,
    ("GET", "/api/v1/rentals/{rental_id}"): _R,
    ("GET", "/api/v1/ops/rentals/stuck"): _O,
    ("GET", "/api/v1/ops/rentals/{rental_id}"): _O,
    ("POST", "/api/v1/ops/rentals/{rental_id}/end"): _O,
    ("GET", "/api/v1/ops/umbrellas/{tag}"): _O,
    ("POST", "/api/v1/ads/media"): _A,
    ("GET", "/api/v1/media/{sha256}"): _P,
    ("POST", "/api/v1/ads/creatives"): _A,
    ("GET", "/api/v1/ads/creatives"): _A,
    ("GET", "/api/v1/ads/creatives/{creative_id}"): _A,
    ("PUT", "/api/v1/ads/creatives/{creative_id}"): _A,
    ("GET", "/api/v1/ops/creatives"): _O,
    ("GET", "/api/v1/ops/creatives/{creative_id}"): _O,
    ("POST", "/api/v1/ops/creatives/{creative_id}/approve"): _O,
    ("POST", "/api/v1/ops/creatives/{creative_id}/reject"): _O,
    ("POST", "/api/v1/ads/availability"): _AO,
    ("GET", "/api/v1/ads/prices"): USERS,
    ("PUT", "/api/v1/ops/ads/prices/{venue_type}"): _O,
    ("POST", "/api/v1/ads/bookings"): _A,
    ("GET", "/api/v1/ads/bookings"): _A,
    ("GET", "/api/v1/ads/bookings/{booking_id}"): _A,
    ("POST", "/api/v1/ads/bookings/{booking_id}/hold"): _A,
    ("POST", "/api/v1/ads/bookings/{booking_id}/confirm"): _A,
    ("POST", "/api/v1/ads/bookings/{booking_id}/release"): _A,
    ("GET", "/api/v1/ops/ads/bookings"): _O,
    ("GET", "/api/v1/ops/ads/bookings/{booking_id}"): _O,
    ("GET", "/api/v1/ops/kiosks/{kiosk_id}/playlists"): _O,
    ("GET", "/api/v1/ops/kiosks/{kiosk_id}/playing"): _O,
    ("GET", "/api/v1/house/{file_name}"): _P,
    ("GET", "/api/v1/ads/bookings/{booking_id}/delivery"): _A,
    ("GET", "/api/v1/ads/delivery"): _A,
    ("GET", "/api/v1/ops/bookings/{booking_id}/delivery"): _O,
    ("GET", "/api/v1/ads/invoices"): _A,
    ("GET", "/api/v1/ads/invoices/{invoice_id}.csv"): _A,
    ("GET", "/api/v1/ads/invoices/{invoice_id}"): _A,
    ("GET", "/api/v1/ads/credits"): _A,
    ("GET", "/api/v1/ops/invoices"): _O,
    ("GET", "/api/v1/ops/invoices/{invoice_id}"): _O,
    ("POST", "/api/v1/ops/invoices/{invoice_id}/paid"): _O,
    ("GET", "/gbfs/v3/{name}.json"): _P,
    ("GET", "/api/v1/partner/dashboard"): _PO,
    ("GET", "/api/v1/partner/dashboard/stream"): _PO,
    ("GET", "/api/v1/partner/alerts"): _PO,
    ("GET", "/api/v1/partner/alerts/{alert_id}"): _PO,
    ("POST", "/api/v1/partner/alerts/{alert_id}/ack"): _PO,
    ("GET", "/api/v1/partner/rebalancing/suggestions"): _PO,
    ("POST", "/api/v1/partner/rebalancing/tasks"): _PO,
    ("GET", "/api/v1/partner/rebalancing/tasks"): _PO,
    ("GET", "/api/v1/partner/rebalancing/tasks/{task_id}"): _PO,
    ("POST", "/api/v1/partner/rebalancing/tasks/{task_id}/done"): _PO,
    ("GET", "/api/v1/partner/statements"): _PO,
    ("GET", "/api/v1/partner/statements/{statement_id}.csv"): _PO,
    ("GET", "/api/v1/partner/statements/{statement_id}"): _PO,
    ("POST", "/api/v1/ops/partner-statements/{statement_id}/pay"): _O,
    ("GET", "/console/"): _P,
    ("GET", "/console"): _P,
    ("GET", "/console/static/{name}"): _P,
    ("GET", "/console/{page}"): _P,
}

#: Request bodies that would be accepted from an allowed caller, so a refusal is about who
#: asks, never about a malformed request.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/advertisers"): {
        "name": "Intruder Ltd",
        "billing_mode": "prepaid",
        "lost_spot_policy": "make_good",
        "admin_login": "intruder-admin",
        "admin_password": "pw-intruder-secret",
    },
    ("POST", "/api/v1/users"): {"login": "intruder", "password": "pw-x-secret", "role": "operator"},
    ("POST", "/api/v1/partners"): {"name": "Intruder Ops", "region": "Nowhere"},
    ("PATCH", "/api/v1/partners/{partner_id}"): {"revenue_share_bp": 9999},
    ("POST", "/api/v1/kiosks"): {
        "name": "Intruder kiosk",
        "partner_id": 1,
        "lat": 30.27,
        "lon": 120.15,
        "address": "x",
        "venue_type": "105",
    },
    ("PATCH", "/api/v1/kiosks/{kiosk_id}/ad-screen"): {"loop_seconds": 120},
    ("POST", "/api/v1/kiosks/{kiosk_id}/commands"): {"op": "ping", "timeout_s": 0.1},
    ("POST", "/api/v1/rentals"): {"kiosk_id": "KP1"},
    ("POST", "/api/v1/ops/rentals/{rental_id}/end"): {"reason": "intruder"},
    ("POST", "/api/v1/ops/creatives/{creative_id}/approve"): {"note": "intruder"},
    ("POST", "/api/v1/ops/creatives/{creative_id}/reject"): {"note": "intruder"},
    ("PUT", "/api/v1/ops/ads/prices/{venue_type}"): {"fen_per_spot_day": 1},
    ("POST", "/api/v1/ops/invoices/{invoice_id}/paid"): {"payment_reference": "intruder-1"},
    ("POST", "/api/v1/partner/rebalancing/tasks"): {
        "from_kiosk_id": "KP1",
        "to_kiosk_id": "KP2",
        "quantity": 1,
    },
}
_WINDOW = {"start_date": "2026-12-10", "end_date": "2026-12-11", "dayparts": "07-10"}
BODIES[("POST", "/api/v1/ads/availability")] = {"selection": {"kiosk_ids": ["KP1"]}, **_WINDOW}
BODIES[("POST", "/api/v1/ads/bookings")] = {
    "name": "intruder",
    "spots_per_loop": 1,
    "selection": {"kiosk_ids": ["KP1"]},
    "creative_ids": [1],
    **_WINDOW,
}
BODIES[("POST", "/api/v1/ads/creatives")] = BODIES[
    ("PUT", "/api/v1/ads/creatives/{creative_id}")
] = {
    "kind": "image",
    "duration_ms": 10_000,
    "title": "intruder",
    "sha256": "0" * 64,
}
HEADERS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/api/v1/deposits"): {"Idempotency-Key": "intruder-1"},
    ("POST", "/api/v1/rentals"): {"Idempotency-Key": "intruder-1"},
}


def app_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(operator_token="op-secret"))
    return {
        (method, str(route.path))
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        for method in route.methods or ()
    }


def test_every_route_declares_who_may_call_it() -> None:
    routes = app_routes()
    assert sorted(routes - ROUTES.keys()) == [], "classify these routes in ROUTES"
    assert sorted(ROUTES.keys() - routes) == [], "these routes are gone: drop them from ROUTES"


# -- the world: two tenants of each kind -----------------------------------------------------


@dataclass(frozen=True)
class Advertiser:
    account: Account
    creative: int
    held: int  # a held booking
    confirmed: int  # a confirmed booking, with its prepaid invoice
    invoice: int


@dataclass(frozen=True)
class Partner:
    id: int
    headers: dict[str, str]
    kiosks: tuple[str, str]
    alert: int
    task: int
    statement: int


@dataclass(frozen=True)
class RiderT:
    id: int
    headers: dict[str, str]
    rental: int
    payment: int


@dataclass
class World:
    client: TestClient
    db: Database
    advertisers: dict[str, Advertiser]
    partners: dict[str, Partner]
    riders: dict[str, RiderT]

    def headers_of(self, kind: str) -> dict[str, str]:
        """Credentials of one caller of each kind (the first tenant's)."""
        return {
            PUBLIC: {},
            RIDER: self.riders["R"].headers,
            ADVERTISER: self.advertisers["A"].account.headers,
            PARTNER: self.partners["P"].headers,
            OPERATOR_ROLE: OPERATOR,
        }[kind]

    def fingerprint(self) -> dict[str, Any]:
        """Rows per table plus every status column's values: what a refused request must
        leave as it was."""
        found: dict[str, Any] = {}
        with self.db.transaction() as s:
            for table in Base.metadata.sorted_tables:
                found[table.name] = s.scalar(select(func.count()).select_from(table))
                for column in ("status", "revenue_share_bp", "loop_seconds", "acked_at"):
                    if column in table.c:
                        found[f"{table.name}.{column}"] = sorted(
                            map(str, s.scalars(select(table.c[column])))
                        )
        return found


def _booking(w: TestClient, who: Account, creative: int, name: str) -> int:
    start = clock.now().date() + timedelta(days=10)
    body = {
        "name": name,
        "spots_per_loop": 1,
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=1)).isoformat(),
        "dayparts": "07-10",
        "selection": {"kiosk_ids": ["KP1", "KQ1"]},
        "creative_ids": [creative],
    }
    r = w.post("/api/v1/ads/bookings", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _act(c: TestClient, who: Account, booking_id: int, action: str) -> None:
    r = c.post(f"/api/v1/ads/bookings/{booking_id}/{action}", headers=who.headers)
    assert r.status_code == 200, r.text


def _build_advertiser(c: TestClient, db: Database, name: str) -> Advertiser:
    account = make_advertiser(c, name, operator_headers=OPERATOR)
    creative = _creative(db, account.id)
    confirmed = _booking(c, account, creative, f"{name} confirmed")
    _act(c, account, confirmed, "confirm")
    held = _booking(c, account, creative, f"{name} held")
    _act(c, account, held, "hold")
    (invoice,) = c.get("/api/v1/ads/invoices", headers=account.headers).json()
    assert invoice["booking_id"] == confirmed
    return Advertiser(account, creative, held, confirmed, int(invoice["id"]))


def _build_partner(c: TestClient, name: str, login: str, kiosks: tuple[str, str]) -> Partner:
    partner_id = _partner(c, f"{name} Ops", name)
    r = c.patch(
        f"/api/v1/partners/{partner_id}",
        json={"revenue_share_bp": 3000, "payout_mchid": f"19000001{partner_id:02d}"},
        headers=OPERATOR,
    )
    assert r.status_code == 200, r.text
    for kiosk_id in kiosks:
        _kiosk(c, kiosk_id, partner_id)
    headers = _partner_user(c, login, partner_id)
    r = c.post(
        "/api/v1/partner/rebalancing/tasks",
        json={"from_kiosk_id": kiosks[0], "to_kiosk_id": kiosks[1], "quantity": 2},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return Partner(partner_id, headers, kiosks, alert=0, task=int(r.json()["id"]), statement=0)


def _with_alert_and_statement(c: TestClient, p: Partner) -> Partner:
    alerts = c.get("/api/v1/partner/alerts", headers=p.headers).json()["open"]
    statements = c.get("/api/v1/partner/statements", headers=p.headers).json()
    assert alerts, alerts
    assert statements, statements
    return Partner(
        p.id, p.headers, p.kiosks, int(alerts[0]["id"]), p.task, int(statements[0]["id"])
    )


def _build_rider(c: TestClient, db: Database, standin: Any, n: int) -> RiderT:
    started = clock.now() - timedelta(hours=3)
    with db.transaction() as s:
        _rental(
            s,
            n,
            "KP1",
            started,
            returned_to="KQ1",
            returned_at=started + timedelta(hours=1),
        )
    r = c.post("/api/v1/riders/login", json={"code": standin.issue_login_code(f"openid-{n}")})
    assert r.status_code == 200, r.text
    rider_id = int(r.json()["rider_id"])
    with db.transaction() as s:
        assert s.scalar(select(Rider.openid).where(Rider.id == rider_id)) == f"openid-{n}"
        rental = s.scalar(select(Rental.id).where(Rental.rider_id == rider_id))
        payment = s.scalar(select(DepositPayment.id).where(DepositPayment.rider_id == rider_id))
    assert rental is not None
    assert payment is not None
    return RiderT(rider_id, {"Authorization": f"Bearer {r.json()['token']}"}, rental, payment)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    tmp_path: Path = tmp_path_factory.mktemp(f"isolation-{request.param}")
    with make_standin() as standin, _database(request.param, tmp_path) as db:
        settings = Settings(
            data_dir=tmp_path,
            operator_token="op-secret",
            wechat_appid=standin.appid,
            wechat_api_base_url=standin.url,
            wechatpay_base_url=standin.url,
            wechatpay_mchid=standin.mchid,
            wechatpay_notify_url="http://127.0.0.1:9/notify",
            wechatpay_refund_notify_url="http://127.0.0.1:9/refund-notify",
        )
        with (
            MiniProgramClient(standin.appid, standin.secret, base_url=standin.url) as mini,
            WeChatPayClient(standin.pay_config()) as pay,
            TestClient(create_app(settings, db=db, hooks=[attach_wechat(mini, pay)])) as c,
        ):
            p = _build_partner(c, "Hangzhou", "hz-staff", ("KP1", "KP2"))
            q = _build_partner(c, "Ningbo", "nb-staff", ("KQ1", "KQ2"))
            advertisers = {
                "A": _build_advertiser(c, db, "Acme"),
                "B": _build_advertiser(c, db, "Beta"),
            }
            # Every kiosk is empty: each partner gets "nearly empty" alerts; one kiosk of
            # each is offline for an hour too.
            with db.transaction() as s:
                s.execute(
                    update(KioskState)
                    .where(KioskState.kiosk_id.in_(["KP2", "KQ2"]))
                    .values(online=False, online_changed_at=clock.now() - timedelta(hours=1))
                )
            with db.transaction() as s:
                assert alert_jobs.evaluate(s, clock.now()) >= 4
            # Statements of the periods that end within the next 40 days.
            with db.transaction(immediate=True) as s:
                assert revenue_jobs.issue_statements(s, clock.now() + timedelta(days=40)) >= 2
            partners = {"P": _with_alert_and_statement(c, p), "Q": _with_alert_and_statement(c, q)}
            riders = {"R": _build_rider(c, db, standin, 1), "S": _build_rider(c, db, standin, 2)}
            yield World(c, db, advertisers, partners, riders)
        # As after every test with a database (tests/conftest.py): the ledger balances.
        with db.transaction() as s:
            assert ledger.check_invariants(s) == []


@contextmanager
def _database(backend: str, tmp_path: Path) -> Iterator[Database]:
    """The module's own database: a SQLite file, or a throw-away PostgreSQL database."""
    if backend == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'isolation.sqlite3'}")
        Base.metadata.create_all(db.engine)
        try:
            yield db
        finally:
            db.dispose()
        return
    with throwaway_pg_database(migrate=False, prefix="umb_isolation") as url:
        db = Database(url, pool_size=5, max_overflow=10)
        try:
            yield db
        finally:
            db.dispose()


# -- 1. callers a route does not admit are refused -------------------------------------------


PATH_PARAM = re.compile(r"\{(\w+)\}")


def _fill(w: World, path: str) -> str:
    """The path with the first tenants' real ids."""
    a, p, r = w.advertisers["A"], w.partners["P"], w.riders["R"]
    ids = {
        "partner_id": p.id,
        "kiosk_id": p.kiosks[0],
        "payment_id": r.payment,
        "rental_id": r.rental,
        "tag": "E2KP10001",
        "sha256": "0" * 64,
        "creative_id": a.creative,
        "venue_type": "105",
        "booking_id": a.held,
        "file_name": "tip.svg",
        "invoice_id": a.invoice,
        "name": "station_status",
        "alert_id": p.alert,
        "task_id": p.task,
        "statement_id": p.statement,
        "page": "operator",
    }
    return PATH_PARAM.sub(lambda m: str(ids[m.group(1)]), path)


CALLER_NAMES = {
    PUBLIC: "a caller without credentials",
    RIDER: "a rider",
    ADVERTISER: "an advertiser's user",
    PARTNER: "a partner's user",
    OPERATOR_ROLE: "an operator",
}

GATED = [
    pytest.param(method, path, caller, id=f"{CALLER_NAMES[caller]} is refused at {method} {path}")
    for (method, path), allowed in ROUTES.items()
    if PUBLIC not in allowed
    for caller in (PUBLIC, *ROLES)
    if caller not in allowed
]


@pytest.mark.parametrize(("method", "path", "caller"), GATED)
def test_a_caller_the_route_does_not_admit_is_refused_and_nothing_changes(
    world: World, method: str, path: str, caller: str
) -> None:
    before = world.fingerprint()
    r = world.client.request(
        method,
        _fill(world, path),
        json=BODIES.get((method, path)),
        headers={**world.headers_of(caller), **HEADERS.get((method, path), {})},
    )
    expected = 401 if caller in (PUBLIC, RIDER) or ROUTES[(method, path)] == _R else 403
    assert r.status_code == expected, r.text
    assert world.fingerprint() == before


# -- 2. another tenant's ids -----------------------------------------------------------------

PAIRS = {ADVERTISER: ("A", "B"), PARTNER: ("P", "Q"), RIDER: ("R", "S")}
KIND_NAMES = {ADVERTISER: "advertiser", PARTNER: "partner", RIDER: "rider"}

#: kind -> (what the other tenant tries, "METHOD path" with {} for the id, the owner's
#: attribute that is the id). Bodies that an owner's request could carry are in FOREIGN_BODIES.
FOREIGN_IDS: dict[str, list[tuple[str, str, str]]] = {
    ADVERTISER: [
        ("read {owner}'s creative", "GET /api/v1/ads/creatives/{}", "creative"),
        ("edit and resubmit {owner}'s creative", "PUT /api/v1/ads/creatives/{}", "creative"),
        ("read {owner}'s booking", "GET /api/v1/ads/bookings/{}", "held"),
        ("hold {owner}'s booking", "POST /api/v1/ads/bookings/{}/hold", "held"),
        ("confirm {owner}'s booking", "POST /api/v1/ads/bookings/{}/confirm", "held"),
        ("release {owner}'s booking", "POST /api/v1/ads/bookings/{}/release", "held"),
        ("read {owner}'s delivery", "GET /api/v1/ads/bookings/{}/delivery", "confirmed"),
        ("read {owner}'s invoice", "GET /api/v1/ads/invoices/{}", "invoice"),
        ("download {owner}'s invoice as CSV", "GET /api/v1/ads/invoices/{}.csv", "invoice"),
    ],
    PARTNER: [
        ("read {owner}'s alert", "GET /api/v1/partner/alerts/{}", "alert"),
        ("acknowledge {owner}'s alert", "POST /api/v1/partner/alerts/{}/ack", "alert"),
        ("read {owner}'s task", "GET /api/v1/partner/rebalancing/tasks/{}", "task"),
        ("mark {owner}'s task done", "POST /api/v1/partner/rebalancing/tasks/{}/done", "task"),
        ("read {owner}'s statement", "GET /api/v1/partner/statements/{}", "statement"),
        (
            "download {owner}'s statement as CSV",
            "GET /api/v1/partner/statements/{}.csv",
            "statement",
        ),
        ("see {owner}'s dashboard", "GET /api/v1/partner/dashboard?partner_id={}", "id"),
        (
            "stream {owner}'s dashboard",
            "GET /api/v1/partner/dashboard/stream?partner_id={}",
            "id",
        ),
        ("list {owner}'s alerts", "GET /api/v1/partner/alerts?partner_id={}", "id"),
        ("list {owner}'s tasks", "GET /api/v1/partner/rebalancing/tasks?partner_id={}", "id"),
        (
            "see {owner}'s rebalancing suggestions",
            "GET /api/v1/partner/rebalancing/suggestions?partner_id={}",
            "id",
        ),
    ],
    RIDER: [
        ("read {owner}'s rental", "GET /api/v1/rentals/{}", "rental"),
        ("refresh {owner}'s deposit payment", "POST /api/v1/deposits/{}/refresh", "payment"),
    ],
}
FOREIGN_BODIES: dict[str, Any] = {
    "PUT /api/v1/ads/creatives/{}": {
        "kind": "image",
        "duration_ms": 10_000,
        "title": "Mine now",
        "sha256": "0" * 64,
    },
    "POST /api/v1/partner/rebalancing/tasks/{}/done": {"note": "moved"},
}


def _tenant(w: World, kind: str, who: str) -> Any:
    if kind == ADVERTISER:
        return w.advertisers[who]
    return w.partners[who] if kind == PARTNER else w.riders[who]


def _headers(w: World, kind: str, who: str) -> dict[str, str]:
    tenant = _tenant(w, kind, who)
    return dict(tenant.account.headers if kind == ADVERTISER else tenant.headers)


def _owner_view(w: World, kind: str, owner: str, method: str, path: str) -> Any:
    """What the owner sees of the resource an action targets (proves the id is real)."""
    if method == "GET":
        read = path.replace("/stream", "")
    elif method == "PUT":
        read = path
    elif "/deposits/" in path:
        read = "/api/v1/riders/me"
    else:
        read = path.rsplit("/", 1)[0]
    r = w.client.get(read, headers=_headers(w, kind, owner))
    assert r.status_code == 200, r.text
    return r.json() if "json" in r.headers.get("content-type", "") else r.text


FOREIGN = [
    pytest.param(
        kind,
        route,
        attr,
        owner,
        intruder,
        id=f"{KIND_NAMES[kind]} {intruder} cannot {sentence.format(owner=owner)}",
    )
    for kind, cases in FOREIGN_IDS.items()
    for sentence, route, attr in cases
    for owner, intruder in (PAIRS[kind], PAIRS[kind][::-1])
]


@pytest.mark.parametrize(("kind", "route", "attr", "owner", "intruder"), FOREIGN)
def test_another_tenants_id_is_unknown_and_its_resource_unchanged(
    world: World, kind: str, route: str, attr: str, owner: str, intruder: str
) -> None:
    method, template = route.split(" ")
    path = template.format(getattr(_tenant(world, kind, owner), attr))
    before = _owner_view(world, kind, owner, method, path)
    fingerprint = world.fingerprint()

    r = world.client.request(
        method, path, json=FOREIGN_BODIES.get(route), headers=_headers(world, kind, intruder)
    )

    assert r.status_code == 404, r.text
    assert world.fingerprint() == fingerprint
    after = _owner_view(world, kind, owner, method, path)
    if method != "GET":  # a read changes nothing; a live view (dashboard) moves with time
        assert after == before


def test_every_tenant_route_with_an_id_in_its_path_is_tried_with_foreign_ids() -> None:
    tried = {
        route.split("?")[0].replace("{}", "{x}")
        for cases in FOREIGN_IDS.values()
        for _, route, _ in cases
    }
    wanted = {
        f"{method} {PATH_PARAM.sub('{x}', path)}"
        for (method, path), allowed in ROUTES.items()
        if "{" in path and allowed & {ADVERTISER, PARTNER, RIDER} and PUBLIC not in allowed
    }
    assert sorted(wanted - tried) == []


# -- 3. acting on another tenant's things through bodies ------------------------------------


def test_an_advertiser_cannot_book_with_another_advertisers_creative(world: World) -> None:
    a, b = world.advertisers["A"], world.advertisers["B"]
    start = clock.now().date() + timedelta(days=10)
    body = {
        "name": "borrowed creative",
        "spots_per_loop": 1,
        "start_date": start.isoformat(),
        "end_date": start.isoformat(),
        "dayparts": "07-10",
        "selection": {"kiosk_ids": ["KP1"]},
        "creative_ids": [a.creative],
    }
    before = world.fingerprint()
    r = world.client.post("/api/v1/ads/bookings", json=body, headers=b.account.headers)
    assert r.status_code == 404, r.text
    assert world.fingerprint() == before


def test_an_advertiser_cannot_create_users_for_another_advertiser_or_operators(
    world: World,
) -> None:
    a, b = world.advertisers["A"], world.advertisers["B"]
    before = world.fingerprint()
    for body in (
        {
            "login": "mole",
            "password": "pw-mole-secret",
            "role": "advertiser",
            "advertiser_id": b.account.id,
        },
        {"login": "mole", "password": "pw-mole-secret", "role": "operator"},
        {
            "login": "mole",
            "password": "pw-mole-secret",
            "role": "partner",
            "partner_id": world.partners["P"].id,
        },
    ):
        r = world.client.post("/api/v1/users", json=body, headers=a.account.headers)
        assert r.status_code == 403, r.text
    assert world.fingerprint() == before


def test_a_partner_cannot_create_a_task_between_another_partners_kiosks(world: World) -> None:
    p, q = world.partners["P"], world.partners["Q"]
    before = world.fingerprint()
    for kiosks in (q.kiosks, (p.kiosks[0], q.kiosks[0]), (q.kiosks[0], p.kiosks[0])):
        r = world.client.post(
            "/api/v1/partner/rebalancing/tasks",
            json={"from_kiosk_id": kiosks[0], "to_kiosk_id": kiosks[1], "quantity": 1},
            headers=p.headers,
        )
        assert r.status_code == 404, r.text
    assert world.fingerprint() == before


# -- 4. lists never show another tenant's ids ------------------------------------------------


def _ids(found: Any, key: str = "id") -> set[Any]:
    """Every value of `key` anywhere in a JSON document."""
    out: set[Any] = set()
    if isinstance(found, dict):
        for k, v in found.items():
            if k == key and not isinstance(v, (dict, list)):
                out.add(v)
            out |= _ids(v, key)
    elif isinstance(found, list):
        for item in found:
            out |= _ids(item, key)
    return out


#: kind -> (what, path, JSON key of the ids, the owner's attributes that are those ids)
LISTS: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = {
    ADVERTISER: [
        ("creatives", "/api/v1/ads/creatives", "id", ("creative",)),
        ("bookings", "/api/v1/ads/bookings", "id", ("held", "confirmed")),
        ("delivery", "/api/v1/ads/delivery?from={d0}&to={d1}", "booking_id", ("confirmed",)),
        ("invoices", "/api/v1/ads/invoices", "id", ("invoice",)),
    ],
    PARTNER: [
        ("dashboard kiosks", "/api/v1/partner/dashboard", "id", ("kiosks",)),
        ("alerts' kiosks", "/api/v1/partner/alerts", "kiosk_id", ("kiosks",)),
        ("alerts", "/api/v1/partner/alerts", "id", ("alert",)),
        ("rebalancing tasks", "/api/v1/partner/rebalancing/tasks", "id", ("task",)),
        ("statements", "/api/v1/partner/statements", "id", ("statement",)),
        (
            "statements even when asking for the owner's",
            "/api/v1/partner/statements?partner_id={owner_partner}",
            "id",
            ("statement",),
        ),
    ],
    RIDER: [
        ("rentals", "/api/v1/rentals", "id", ("rental",)),
        ("profile", "/api/v1/riders/me", "payment_id", ("payment",)),
    ],
}

LIST_CASES = [
    pytest.param(
        kind,
        path,
        key,
        attrs,
        owner,
        other,
        id=f"{KIND_NAMES[kind]} {other}'s {name} never show {owner}'s",
    )
    for kind, lists in LISTS.items()
    for name, path, key, attrs in lists
    for owner, other in (PAIRS[kind], PAIRS[kind][::-1])
]


def _owned(w: World, kind: str, who: str, attrs: tuple[str, ...]) -> set[Any]:
    found: set[Any] = set()
    for attr in attrs:
        value = getattr(_tenant(w, kind, who), attr)
        found |= set(value) if isinstance(value, tuple) else {value}
    return found


@pytest.mark.parametrize(("kind", "path", "key", "attrs", "owner", "other"), LIST_CASES)
def test_a_list_shows_the_owner_its_ids_and_the_other_tenant_none(
    world: World, kind: str, path: str, key: str, attrs: tuple[str, ...], owner: str, other: str
) -> None:
    start = clock.now().date() + timedelta(days=10)
    owner_partner = world.partners[owner].id if kind == PARTNER else 0
    url = path.format(d0=start, d1=start + timedelta(days=1), owner_partner=owner_partner)
    mine = _owned(world, kind, owner, attrs)

    as_owner = world.client.get(url, headers=_headers(world, kind, owner))
    as_other = world.client.get(url, headers=_headers(world, kind, other))

    assert as_owner.status_code == as_other.status_code == 200, (as_owner.text, as_other.text)
    assert _ids(as_owner.json(), key) & mine, "the owner's list shows its own ids"
    assert not _ids(as_other.json(), key) & mine


def test_availability_names_only_the_callers_own_bookings(world: World) -> None:
    start = clock.now().date() + timedelta(days=10)
    body = {
        "selection": {"kiosk_ids": ["KP1", "KQ1"]},
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=1)).isoformat(),
        "dayparts": "07-10",
    }
    for me, them in (("A", "B"), ("B", "A")):
        r = world.client.post(
            "/api/v1/ads/availability", json=body, headers=world.advertisers[me].account.headers
        )
        assert r.status_code == 200, r.text
        named = {int(b) for k in r.json()["kiosks"] for b in k["bookings"]}
        others = {int(x) for k in r.json()["kiosks"] for x in k["held_by_others"] or []}
        mine, theirs = world.advertisers[me], world.advertisers[them]
        assert {mine.held, mine.confirmed} <= named
        assert not named & {theirs.held, theirs.confirmed}
        assert max(others, default=0) >= 1  # theirs are counted, not named


def test_the_partner_list_shows_revenue_share_terms_only_to_the_partner_and_operators(
    world: World,
) -> None:
    p, q = world.partners["P"], world.partners["Q"]

    def terms(headers: dict[str, str]) -> dict[int, tuple[Any, Any]]:
        r = world.client.get("/api/v1/partners", headers=headers)
        assert r.status_code == 200, r.text
        return {x["id"]: (x["revenue_share_bp"], x["payout_mchid"]) for x in r.json()}

    as_p, as_q = terms(p.headers), terms(q.headers)
    assert (as_p[p.id][0], as_p[q.id]) == (3000, (None, None))
    assert (as_q[q.id][0], as_q[p.id]) == (3000, (None, None))
    for headers in ({}, world.advertisers["A"].account.headers):
        assert set(terms(headers).values()) == {(None, None)}
    assert {v[0] for v in terms(OPERATOR).values()} == {3000}
