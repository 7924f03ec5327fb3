"""The web console in a real headless Chromium against the API under uvicorn, with simulated
kiosks behind a real broker and bridge (SPEC §4, §5): a partner watches its kiosks live
and completes a rebalancing task; an advertiser uploads a creative, an operator approves it,
the advertiser books it and follows delivery as the kiosks play it. Screenshots are saved
under test-artifacts/screenshots/."""

from __future__ import annotations

import re
import socket
import struct
import uuid
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, BrowserContext, Page, expect

from device_sim.credentials import KioskCredential
from device_sim.fleet import Fleet
from server.accounts import service as accounts
from server.app import create_app
from server.bridge.runner import Bridge
from server.config import Settings
from server.console import router as console_router
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import MemorySharedState, RedisSharedState, SharedState
from server.kiosks import service as kiosks
from server.ledger import service as ledger
from server.models import Base, Rental, Role
from server.partners import service as partners
from server.playlists.jobs import compile_and_push
from server.rentals import service as rentals
from server.runtime import attach_bridge
from tests.accounts_env import Account, log_in, make_advertiser
from tests.e2e.browser import WAIT_MS, PageErrors, chromium, screenshot
from tests.e2e.conftest import (
    CENTER,
    CLOUD_PASSWORD,
    E2E_REDIS_URL,
    FLEET_SIZE,
    STACKS,
    Registry,
    new_bridge,
    start_broker,
)
from tests.integration.rows import add_rider_with_deposit
from tests.services import eventually, require, throwaway_pg_database
from tests.wechat_env import serve

SHANGHAI = ZoneInfo("Asia/Shanghai")
SESSION_KEY = "umbrella.console.session"
#: A 6-second loop of 1-second spots: a booked kiosk plays every second or two.
LOOP = {"loop_seconds": 6, "spot_seconds": 1}


@dataclass
class Console:
    kind: str
    base_url: str
    api: httpx.Client
    settings: Settings
    db: Database
    broker_port: int
    bridge: Bridge
    credentials: list[KioskCredential]
    partner_id: int
    operator: Account
    fleets: list[Fleet] = field(default_factory=list)

    def start_fleet(self, credentials: list[KioskCredential], **options: Any) -> Fleet:
        options.setdefault("seed", 11)
        fleet = Fleet(credentials, "127.0.0.1", self.broker_port, **options)
        self.fleets.append(fleet)
        fleet.start()
        return fleet

    def stop_fleets(self) -> None:
        while self.fleets:
            self.fleets.pop().stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def build_registry(kind: str, tmp_path: Path, es: ExitStack) -> Registry:
    """As tests/e2e/conftest.py's, but the schema comes from the models (create_all): these
    tests are about the pages, and the migrations have their own tests."""
    u = uuid.uuid4().hex[:8]
    common: dict[str, Any] = {
        "data_dir": tmp_path,
        "mqtt_host": "127.0.0.1",
        "mqtt_username": "cloud",
        "mqtt_password": CLOUD_PASSWORD,
        "bridge_id": f"console-bridge-{u}",
        "bridge_group": f"console{u}",
        "operator_token": "",
    }
    if kind == "production":
        url = es.enter_context(throwaway_pg_database(migrate=False, prefix="umb_console"))
        require("Redis", "127.0.0.1", 6379)
        r = redis.Redis.from_url(E2E_REDIS_URL)
        r.flushdb()
        r.close()
        settings = Settings(
            database_url=url, redis_url=E2E_REDIS_URL, embedded_broker=False, **common
        )
        db = Database(url, pool_size=5, max_overflow=10)
    else:
        settings = Settings(database_url="", redis_url="", embedded_broker=True, **common)
        db = Database(settings.db_url)
        Base.metadata.create_all(db.engine)
    es.callback(db.dispose)
    with db.transaction() as session:
        partner = partners.find_or_register(session, name="E2E City Partner", region="Hangzhou")
        creds = kiosks.seed_fleet(
            session, FLEET_SIZE, partner_id=partner.id, lat=CENTER[0], lon=CENTER[1]
        )
        kiosks.export_broker_files(session, settings)
    return Registry(settings, db, [KioskCredential(c.kiosk_id, c.password) for c in creds])


@pytest.fixture(params=STACKS)
def console(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Console]:
    """FLEET_SIZE kiosks of one partner (no simulated kiosk running yet), a broker and a
    bridge as in tests/e2e/conftest.py, the API on a real socket for the browser, and an
    operator user. No operator token: like the embedded default, operators are users."""
    kind: str = request.param
    with ExitStack() as es:
        reg = build_registry(kind, tmp_path, es)
        broker_port = start_broker(kind, reg.settings, es)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        api_port = sock.getsockname()[1]
        settings = reg.settings.model_copy(
            update={"mqtt_port": broker_port, "api_port": api_port, "operator_token": ""}
        )
        state: SharedState = (
            RedisSharedState(settings.redis_url) if kind == "production" else MemorySharedState()
        )
        es.callback(state.close)
        bridge = new_bridge(settings, reg.db, state, kind)
        es.callback(bridge.stop)
        app = create_app(settings, db=reg.db, hooks=[attach_bridge(bridge)])
        es.enter_context(serve(app, sock))
        base_url = f"http://127.0.0.1:{api_port}"
        api = es.enter_context(httpx.Client(base_url=base_url, timeout=30))
        with reg.db.transaction() as session:
            accounts.create_user(
                session, login="ops-alice", password="pw-ops-alice-secret", role=Role.OPERATOR
            )
        operator = Account(0, "ops-alice", log_in(api, "ops-alice", "pw-ops-alice-secret"))
        partner_id = next(
            p["id"] for p in ok(api.get("/api/v1/partners")) if p["name"] == "E2E City Partner"
        )
        c = Console(
            kind,
            base_url,
            api,
            settings,
            reg.db,
            broker_port,
            bridge,
            reg.credentials,
            partner_id,
            operator,
        )
        es.callback(c.stop_fleets)  # first out: kiosks go before the API, bridge and broker
        yield c
        with reg.db.transaction() as session:
            problems = ledger.check_invariants(session)
        assert problems == [], f"ledger invariants broken after the scenario: {problems}"


# ------------------------------------------------------------------------- helpers


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x10\x80\x30"))
        + chunk(b"IEND", b"")
    )


def partner_user(c: Console, partner_id: int, login: str) -> tuple[str, str]:
    password = f"pw-{login}-secret"
    body = {"login": login, "password": password, "role": "partner", "partner_id": partner_id}
    ok(c.api.post("/api/v1/users", json=body, headers=c.operator.headers), 201)
    return login, password


def open_page(browser: Browser) -> tuple[BrowserContext, Page, PageErrors]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    return context, page, PageErrors(page)


def log_in_page(page: Page, c: Console, login: str, password: str, lands_on: str) -> None:
    page.goto(c.base_url + "/console/login")
    page.fill("#login", login)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_url(f"**{lands_on}")
    expect(page.locator("#who")).to_contain_text(login)


def fetch_status(page: Page, path: str) -> int:
    """Status of a GET the page makes with its own session token (what a curious user could
    try from the browser's console)."""
    status: int = page.evaluate(
        """async ([path, key]) => {
            const token = JSON.parse(sessionStorage.getItem(key)).token;
            return (await fetch(path, {headers: {Authorization: "Bearer " + token}})).status;
        }""",
        [path, SESSION_KEY],
    )
    return status


# ------------------------------------------------------------------------- partner


def test_a_partner_sees_only_its_kiosks_live_and_completes_a_rebalancing_task(
    console: Console, browser: Browser
) -> None:
    c = console
    mine = {cred.kiosk_id for cred in c.credentials}
    # Another partner's kiosks in another city.
    other = ok(
        c.api.post(
            "/api/v1/partners",
            json={"name": "Ningbo Partner", "region": "Ningbo"},
            headers=c.operator.headers,
        ),
        201,
    )
    theirs = set()
    for n, (lat, lon) in enumerate([(29.8683, 121.5440), (29.8750, 121.5500)], start=1):
        k = ok(
            c.api.post(
                "/api/v1/kiosks",
                json={
                    "id": f"KNB{n:03d}",
                    "name": f"Ningbo {n}",
                    "partner_id": other["id"],
                    "lat": lat,
                    "lon": lon,
                    "address": f"Tianyi Square {n}",
                    "venue_type": "105",
                },
                headers=c.operator.headers,
            ),
            201,
        )
        theirs.add(k["id"])
    login, password = partner_user(c, c.partner_id, "hz-field-lead")

    live, src_cred, dst_cred = c.credentials[:3]
    fleet = c.start_fleet([live, src_cred, dst_cred], heartbeat_s=2)
    fleet.wait_all_online()
    src, dst = fleet.kiosk(src_cred.kiosk_id), fleet.kiosk(dst_cred.kiosk_id)
    if len(src.umbrellas()) < len(dst.umbrellas()):
        src, dst = dst, src
    assert len(src.umbrellas()) >= 2, "a seed with umbrellas to move"
    assert len(dst.empty_slots()) >= 2, "a seed with room to move them to"

    context, page, errors = open_page(browser)
    try:
        log_in_page(page, c, login, password, "/console/partner")

        rows = page.locator("#kiosk-rows tr[data-kiosk-id]")
        expect(rows).to_have_count(len(mine))
        shown = set(rows.evaluate_all("rs => rs.map(r => r.dataset.kioskId)"))
        assert shown == mine
        dots = page.locator("#kiosk-map circle.kiosk")
        expect(dots).to_have_count(len(mine))
        assert set(dots.evaluate_all("ds => ds.map(d => d.dataset.kioskId)")) == mine
        assert not shown & theirs
        expect(page.locator("#total-kiosks")).to_have_text(str(len(mine)))
        # The page hides nothing the API would give: asking for the other partner's data
        # with this session's token is refused by the server.
        assert fetch_status(page, f"/api/v1/partner/dashboard?partner_id={other['id']}") == 404
        # Live through the server's event stream, not the polling fallback.
        expect(page.locator("#live")).to_have_text("live")
        expect(page.locator("#live")).to_have_class("live on")

        # One kiosk loses its link and comes back; the page follows without a reload.
        page.evaluate("window.__sameDocument = true")
        row = page.locator(f'#kiosk-rows tr[data-kiosk-id="{live.kiosk_id}"]')
        dot = page.locator(f'#kiosk-map circle[data-kiosk-id="{live.kiosk_id}"]')
        expect(row).to_have_attribute("data-online", "true")
        fleet.kiosk(live.kiosk_id).disconnect()
        expect(row).to_have_attribute("data-online", "false")
        expect(dot).to_have_class("kiosk offline")
        expect(row.locator("[data-state]")).to_have_text("offline")
        screenshot(page, f"{c.kind}-partner-kiosk-offline")
        fleet.kiosk(live.kiosk_id).reconnect()
        expect(row).to_have_attribute("data-online", "true")
        assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"

        # Rebalancing: a task from the kiosk with more umbrellas to the other one.
        page.select_option("#task-from", src.kiosk_id)
        page.select_option("#task-to", dst.kiosk_id)
        page.fill("#task-quantity", "2")
        page.fill("#task-note", "before the evening rush")
        page.click("#task-form button[type=submit]")
        task = page.locator("#task-rows tr[data-task-id]").first
        expect(task).to_have_attribute("data-status", "open")
        expect(task).to_contain_text(f"{src.kiosk_id}")
        src_umbrellas = page.locator(
            f'#kiosk-rows tr[data-kiosk-id="{src.kiosk_id}"] [data-field=umbrellas]'
        )
        src_before = int(src_umbrellas.inner_text())

        # The field staff move two umbrellas: the kiosks report the slot events.
        for slot in sorted(src.umbrellas())[:2]:
            tag = src.remove_umbrella(slot)
            dst.insert_umbrella(dst.empty_slots()[0], tag)
        expect(task).to_contain_text(f"{src.kiosk_id}: −2 +0")
        expect(task).to_contain_text(f"{dst.kiosk_id}: −0 +2")
        expect(src_umbrellas).to_have_text(str(src_before - 2))
        task.locator("button[data-action=done]").click()
        expect(task).to_have_attribute("data-status", "done")
        expect(task.locator("td").last).to_have_text(re.compile(r"^done .* by \S*hz-field-lead$"))
        screenshot(page, f"{c.kind}-partner-rebalancing-done")
        assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
        assert (
            errors.unexpected(r"status of 404", rf"http 404 GET .*partner_id={other['id']}$") == []
        )

        # Another role's page sends the partner back to the login; its API refuses anyway.
        assert fetch_status(page, "/api/v1/ops/creatives") == 403
        page.goto(c.base_url + "/console/operator")
        page.wait_for_url("**/console/login?next=%2Fconsole%2Foperator")
    finally:
        context.close()

    tasks = ok(
        c.api.get(
            "/api/v1/partner/rebalancing/tasks",
            params={"partner_id": c.partner_id},
            headers=c.operator.headers,
        )
    )["items"]
    assert [(t["status"], t["quantity"]) for t in tasks] == [("done", 2)]
    assert "hz-field-lead" in tasks[0]["done_by"]


# ------------------------------------------------------------------------- advertiser and operator


def test_an_operator_approves_a_creative_and_the_advertiser_books_it_and_sees_it_delivered(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    c = console
    a_cred, b_cred = c.credentials[:2]
    a, b = a_cred.kiosk_id, b_cred.kiosk_id
    for k in (a, b):
        ok(c.api.patch(f"/api/v1/kiosks/{k}/ad-screen", json=LOOP, headers=c.operator.headers))
    acme = make_advertiser(c.api, "Acme", operator_headers=c.operator.headers)
    image = tmp_path / "rainy-day.png"
    image.write_bytes(png())

    adv_context, adv, adv_errors = open_page(browser)
    ops_context, ops, ops_errors = open_page(browser)
    try:
        # The advertiser uploads a creative; it waits for review.
        log_in_page(adv, c, acme.login, "pw-Acme-secret", "/console/advertiser")
        adv.set_input_files("#creative-file", str(image))
        adv.fill("#creative-title", "雨天出行，就近还伞")
        adv.fill("#creative-seconds", "1")
        adv.click("#creative-submit")
        expect(adv.locator("#upload-notice")).to_contain_text("pending")
        creative_row = adv.locator("#creative-rows tr[data-creative-id]")
        expect(creative_row).to_have_count(1)
        creative_id = int(creative_row.get_attribute("data-creative-id") or 0)
        expect(creative_row.locator("[data-status]")).to_have_text("pending")

        # The operator reviews it: pending first; approves it.
        log_in_page(ops, c, c.operator.login, "pw-ops-alice-secret", "/console/operator")
        card = ops.locator(f'.creative-card[data-creative-id="{creative_id}"]')
        expect(card).to_contain_text("雨天出行，就近还伞")
        expect(card).to_contain_text("Acme")
        expect(ops.locator("#fleet-kiosks")).to_have_text(str(len(c.credentials)))
        screenshot(ops, f"{c.kind}-operator-review-pending")
        card.locator("input.note").fill("travel slogan, no price")
        card.locator("button[data-action=approve]").click()
        expect(ops.locator("#review-empty")).to_be_visible()
        ops.select_option("#review-filter", "approved")
        expect(card).to_contain_text("travel slogan, no price (ops-alice)")
        screenshot(ops, f"{c.kind}-operator-approved")
        assert ops_errors.unexpected() == []

        reviewed = ok(c.api.get(f"/api/v1/ops/creatives/{creative_id}", headers=c.operator.headers))
        assert reviewed["status"] == "approved"
        last = reviewed["audit"][-1]
        assert (last["actor"], last["action"]) == ("ops-alice", "creative.approve")
        # The advertiser's page picks the review up by itself.
        expect(creative_row.locator("[data-status]")).to_have_text("approved")

        # Booking: two kiosks picked on the drawing, today and tomorrow (kiosk local time),
        # all day, three spots of every loop.
        today = clock.now().astimezone(SHANGHAI).date()
        for k in (a, b):
            adv.locator(f'#kiosk-map circle[data-kiosk-id="{k}"]').dispatch_event("click")
            expect(adv.locator(f'#kiosk-map circle[data-kiosk-id="{k}"]')).to_have_class(
                "kiosk selected"
            )
        expect(adv.locator("#picked-count")).to_have_text("2 kiosks picked")
        adv.fill("#booking-name", "Rainy day")
        adv.fill("#start-date", today.isoformat())
        adv.fill("#end-date", (today + timedelta(days=1)).isoformat())
        adv.fill("#dayparts", "00-24")
        adv.fill("#spots", "3")
        adv.check(f'#creative-picks input[value="{creative_id}"]')
        adv.click("#check-availability")
        availability = adv.locator("#availability-table tbody tr")
        expect(availability).to_have_count(2)
        assert set(availability.evaluate_all("rs => rs.map(r => r.dataset.kioskId)")) == {a, b}
        expect(availability.first).to_contain_text("6")  # spots per loop the screen holds
        adv.click("#quote")
        expect(adv.locator("#quote-status")).to_have_text("draft")
        booking = ok(c.api.get("/api/v1/ads/bookings", headers=acme.headers))["items"][0]
        expect(adv.locator("#quote-total")).to_have_text(booking["price"])
        assert booking["price_fen"] > 0
        adv.click("#hold")
        expect(adv.locator("#quote-status")).to_have_text("held")
        adv.click("#confirm")
        expect(adv.locator("#quote-status")).to_have_text("confirmed")
        expect(
            adv.locator(f'#booking-rows tr[data-booking-id="{booking["id"]}"] [data-status]')
        ).to_have_text("confirmed")
        screenshot(adv, f"{c.kind}-advertiser-booked")

        # The scheduler compiles and pushes the playlists; the kiosks play the spots. Their
        # clocks run into the next hour (an hour that has begun is not sold any more).
        summary = compile_and_push(
            c.db, c.bridge.connection, clock.now(), settings=c.settings, kiosk_ids=[a, b]
        )
        assert summary.published == 2, summary
        fleet = c.start_fleet([a_cred, b_cred], screen=True, heartbeat_s=5)
        now = clock.now()
        next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        ahead_ms = int((next_hour - now).total_seconds() * 1000) + 60_000
        for k in (a, b):
            fleet.kiosk(k).set_faults(clock_skew_ms=ahead_ms)
        fleet.wait_all_online()

        adv.locator(
            f'#booking-rows tr[data-booking-id="{booking["id"]}"] button[data-action=delivery]'
        ).click()
        expect(adv.locator("#delivery-title")).to_contain_text(f"#{booking['id']} Rainy day")
        expect(adv.locator("#delivery-rows tr[data-kiosk-id]")).not_to_have_count(0)
        # The kiosks play the next hour's spots, but each play counts at the kiosk's time
        # corrected by its measured skew: now, on today's line. From 23:00 local today has no
        # sold hour left (the booking starts at the next whole hour), so there the plays are
        # extra, not played (delivery.rules.day_count); any other hour, today is booked.
        counted_as = "extra" if now.astimezone(SHANGHAI).hour == 23 else "played"
        adv.wait_for_function(
            f"() => Number(document.getElementById('delivery-total-{counted_as}').textContent)"
            " >= 2",
            timeout=60_000,
        )
        played_kiosks = adv.locator("#delivery-rows tr[data-kiosk-id]").evaluate_all(
            "rs => [...new Set(rs.map(r => r.dataset.kioskId))]"
        )
        assert set(played_kiosks) == {a, b}
        booked_total = int(adv.locator("#delivery-total-booked").inner_text())
        assert booked_total > 0
        screenshot(adv, f"{c.kind}-advertiser-delivery")
        assert adv_errors.unexpected() == []
    finally:
        adv_context.close()
        ops_context.close()

    report = ok(c.api.get(f"/api/v1/ads/bookings/{booking['id']}/delivery", headers=acme.headers))
    assert report["totals"][counted_as] >= 2
    assert report["totals"]["booked"] == booked_total


# ------------------------------------------------------------------------- operator


def test_an_operator_registers_a_partner_and_a_kiosk_and_force_ends_a_stuck_rental(
    console: Console, browser: Browser
) -> None:
    c = console
    # A rider's rental whose deadline passed long ago while the forfeiture sweep was behind.
    cred = c.credentials[0]
    fleet = c.start_fleet([cred], heartbeat_s=5)
    fleet.wait_all_online()

    def stocked() -> None:
        # Online comes before the first heartbeat: wait until the slots are known.
        assert c.api.get(f"/api/v1/kiosks/{cred.kiosk_id}").json()["umbrellas"] > 0

    eventually(stocked)
    rider = add_rider_with_deposit(c.db, "o-console-rider")
    rental = rentals.rent(
        c.db,
        c.bridge.commands,
        rider,
        cred.kiosk_id,
        "console-1",
        answer_wait_s=15,
        command_expiry_s=10,
    ).rental

    def recorded() -> None:
        # The rent answered on the kiosk's word; the bridge's batch that records the slot
        # event (and moves the start back to its exact moment) must be in before the
        # deadline is moved here, or it would move it back.
        slots = c.api.get(f"/api/v1/kiosks/{cred.kiosk_id}").json()["slots"]
        assert next(s for s in slots if s["slot_no"] == rental.slot_no)["status"] == "empty"

    eventually(recorded)
    with c.db.transaction() as session:
        stuck = session.get(Rental, rental.id)
        assert stuck is not None
        stuck.deadline_at = clock.now() - timedelta(hours=2)

    context, page, errors = open_page(browser)
    try:
        log_in_page(page, c, c.operator.login, "pw-ops-alice-secret", "/console/operator")
        expect(page.locator("#fleet-online")).to_have_text("1")
        expect(page.locator("#fleet-offline")).to_have_text(str(len(c.credentials) - 1))

        # A partner, a user for it, and a kiosk: the MQTT password is shown once.
        page.fill("#partner-name", "Suzhou Umbrellas")
        page.fill("#partner-region", "Suzhou")
        page.click("#partner-form button[type=submit]")
        expect(page.locator("#partner-notice")).to_contain_text("Suzhou Umbrellas registered")
        row = page.locator("#partner-rows tr", has_text="Suzhou Umbrellas")
        partner_id = int(row.get_attribute("data-partner-id") or 0)
        page.select_option("#partner-user-partner", str(partner_id))
        page.fill("#partner-user-login", "sz-lead")
        page.fill("#partner-user-password", "pw-sz-lead-secret")
        page.click("#partner-user-form button[type=submit]")
        expect(page.locator("#partner-notice")).to_contain_text(f"partner #{partner_id}")
        page.fill("#kiosk-id", "KSZ001")
        page.fill("#kiosk-name", "Suzhou Station North")
        page.select_option("#kiosk-partner", str(partner_id))
        page.fill("#kiosk-lat", "31.3305")
        page.fill("#kiosk-lon", "120.6107")
        page.fill("#kiosk-address", "Suzhou railway station, north square")
        page.select_option("#kiosk-venue", "105")
        page.click("#kiosk-form button[type=submit]")
        expect(page.locator("#mqtt-username")).to_have_text("KSZ001")
        password = page.locator("#mqtt-password").inner_text()
        assert len(password) >= 16
        expect(page.locator("#fleet-kiosks")).to_have_text(str(len(c.credentials) + 1))
        registered = ok(c.api.get("/api/v1/kiosks/KSZ001"))
        assert (registered["partner_id"], registered["name"]) == (
            partner_id,
            "Suzhou Station North",
        )
        sz = log_in(c.api, "sz-lead", "pw-sz-lead-secret")
        dashboard = ok(c.api.get("/api/v1/partner/dashboard", headers=sz))
        assert [k["id"] for k in dashboard["kiosks"]] == ["KSZ001"]

        # The stuck rental: force-ended with a reason, as the logged-in operator.
        stuck_row = page.locator(f'#stuck-rows tr[data-rental-id="{rental.id}"]')
        expect(stuck_row).to_contain_text("overdue")
        expect(stuck_row).to_contain_text(cred.kiosk_id)
        screenshot(page, f"{c.kind}-operator-registry-and-stuck")
        stuck_row.locator("button[data-action=force-end]").click()
        expect(page.locator("#stuck-error")).to_contain_text("reason")
        stuck_row.locator("input.reason").fill("rider returned it at the service desk")
        stuck_row.locator("button[data-action=force-end]").click()
        expect(stuck_row).to_have_count(0)
        expect(page.locator("#stuck-error")).to_be_hidden()
        assert (
            errors.unexpected(r"status of 422", rf"http 422 POST .*/rentals/{rental.id}/end$") == []
        )
    finally:
        context.close()

    ended = ok(c.api.get(f"/api/v1/ops/rentals/{rental.id}", headers=c.operator.headers))
    assert ended["status"] == "ended"
    assert [(a["actor"], a["action"], a["reason"]) for a in ended["audit"]] == [
        ("ops-alice", "rental.force_end", "rider returned it at the service desk")
    ]


# ------------------------------------------------------------------------- the files themselves


@pytest.fixture
def plain_client(tmp_path: Path) -> Iterator[TestClient]:
    """The app without a browser: the console's files need no database rows."""
    db = Database(f"sqlite:///{tmp_path / 'console.sqlite3'}")
    try:
        with TestClient(create_app(Settings(data_dir=tmp_path), db=db)) as client:
            yield client
    finally:
        db.dispose()


def test_every_page_and_the_files_it_loads_are_served_under_a_same_origin_policy(
    plain_client: TestClient,
) -> None:
    r = plain_client.get("/console", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "/console/login")
    for page in ("login", "partner", "advertiser", "operator"):
        r = plain_client.get(f"/console/{page}")
        assert r.status_code == 200, page
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        linked = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert linked, page
        for url in linked:
            assert url.startswith("/console/static/"), f"{page} loads {url} from elsewhere"
            f = plain_client.get(url)
            assert f.status_code == 200, url
            assert f.headers["x-content-type-options"] == "nosniff"


def test_unknown_pages_and_files_outside_the_static_folder_are_not_found(
    plain_client: TestClient,
) -> None:
    for path in (
        "/console/admin",
        "/console/static/missing.js",
        "/console/static/router.py",
        "/console/static/.hidden.js",
        "/console/static/login.html",
    ):
        r = plain_client.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"] == "not_found", path
    # A slash, even encoded, makes it another path, which no route serves.
    assert plain_client.get("/console/static/..%2Frouter.py").status_code == 404


def test_the_console_files_reach_for_nothing_outside_the_server() -> None:
    """No CDN, no map tiles, no web fonts: the only absolute URL allowed is the SVG
    namespace, which names a vocabulary and is never fetched."""
    static = Path(console_router.STATIC_DIR)
    files = sorted(static.iterdir())
    assert {f.suffix for f in files} == {".html", ".js", ".css", ".svg"}
    for f in files:
        text = f.read_text(encoding="utf-8")
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, f"{f.name}: {urls}"
        assert "innerHTML" not in text, f"{f.name}: builds DOM from strings"
