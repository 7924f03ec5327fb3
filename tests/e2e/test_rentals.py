"""Riders end to end (issue 3): the mini-program's calls over real HTTP, WeChat answered by
the local stand-in (login, WeChat Pay, signed notifications), umbrellas released and
returned by simulated kiosks through the broker and the bridge, on both stacks (production:
Mosquitto with the project's ACL, PostgreSQL, Redis; embedded: amqtt, SQLite, in-process).

After every scenario the ledger invariants hold (SPEC §3).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from device_sim.fleet import Fleet, KioskHandle
from device_sim.kiosk import LEAVE, take_after
from server.app import create_app
from server.core.clock import clock
from server.ledger import service as ledger
from server.models import EntryKind, JournalEntry, Notification
from server.payments.wechatpay import WeChatPayClient
from server.rentals import jobs as rental_jobs
from server.runtime import attach_bridge, attach_wechat
from server.scheduler.runner import run_in_chunks
from server.wechat.miniprogram import MiniProgramClient
from tests.e2e.conftest import Stack
from tests.services import eventually
from tests.wechat_env import (
    NOTIFY_PATH,
    REFUND_NOTIFY_PATH,
    Env,
    make_standin,
    pay_deposit,
    serve,
)
from tests.wechat_env import login as wx_login
from tests.wechat_env import me as wx_me


@dataclass
class World:
    stack: Stack
    env: Env
    fleet: Fleet

    @property
    def api(self) -> httpx.Client:
        return self.env.api

    def kiosk(self, n: int) -> KioskHandle:
        return self.fleet.kiosk(self.fleet.kiosk_ids[n])

    def rider(self, openid: str) -> dict[str, str]:
        """A logged-in rider whose deposit WeChat Pay confirmed."""
        auth = wx_login(self.env, openid)
        pay_deposit(self.env, auth, key=f"deposit-{openid}")
        assert wx_me(self.env, auth)["deposit"]["state"] == "held"
        return auth

    def rent(self, auth: dict[str, str], kiosk_id: str, key: str) -> httpx.Response:
        """POST a rent. The API answers on the kiosk's word, before the bridge has recorded
        the kiosk's report of it; an active rental's scenario goes on once the kiosk's slot
        shows empty, so a job it runs next does not meet that batch still at work."""
        r = self.api.post(
            "/api/v1/rentals",
            json={"kiosk_id": kiosk_id},
            headers={**auth, "Idempotency-Key": key},
        )
        if r.status_code == 201 and r.json()["status"] == "active":
            self.wait_slot_recorded(kiosk_id, r.json()["slot_no"])
        return r

    def wait_slot_recorded(self, kiosk_id: str, slot_no: int) -> None:
        def emptied() -> None:
            slots = {s["slot_no"]: s for s in self.stack.kiosk(kiosk_id)["slots"]}
            assert slots[slot_no]["status"] == "empty"

        eventually(emptied)

    def current(self, auth: dict[str, str]) -> dict[str, Any] | None:
        r = self.api.get("/api/v1/rentals/current", headers=auth)
        assert r.status_code == 200, r.text
        body: dict[str, Any] | None = r.json()
        return body

    def held_fen(self, auth: dict[str, str]) -> int:
        return int(wx_me(self.env, auth)["deposit"]["held_fen"])

    def invariants(self) -> list[str]:
        with self.stack.db.transaction() as s:
            return ledger.check_invariants(s)

    def entries(self, kind: EntryKind) -> int:
        with self.stack.db.transaction() as s:
            return int(
                s.scalar(
                    select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == kind)
                )
                or 0
            )

    def notification_kinds(self) -> list[str]:
        with self.stack.db.transaction() as s:
            return sorted(s.scalars(select(Notification.kind)))

    def wait_stocked(self, handle: KioskHandle) -> None:
        """Until the API shows the kiosk online with every umbrella the simulator holds."""

        def check() -> None:
            body = self.stack.kiosk(handle.kiosk_id)
            assert body["online"] is True
            shown = {s["tag"] for s in body["slots"] if s["status"] == "umbrella"}
            assert shown == {t.hex().upper() for t in handle.umbrellas().values()}

        eventually(check)


@pytest.fixture
def world(stack: Stack) -> Iterator[World]:
    """The stack's bridge and database behind an API served over HTTP with WeChat settings
    pointing at a stand-in, two simulated kiosks whose riders take the umbrella at once."""
    with (
        make_standin() as standin,
        MiniProgramClient(standin.appid, standin.secret, base_url=standin.url) as mini,
        WeChatPayClient(standin.pay_config()) as pay,
    ):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        settings = stack.settings.model_copy(
            update={
                "wechat_appid": standin.appid,
                "wechat_api_base_url": standin.url,
                "wechatpay_base_url": standin.url,
                "wechatpay_mchid": standin.mchid,
                "wechatpay_notify_url": base + NOTIFY_PATH,
                "wechatpay_refund_notify_url": base + REFUND_NOTIFY_PATH,
                # Short waits: the kiosks' unlock window is 2 s here.
                "rental_command_expiry_s": 2.0,
                "rental_answer_wait_s": 5.0,
            }
        )
        assert stack.bridge is not None
        app = create_app(
            settings, db=stack.db, hooks=[attach_bridge(stack.bridge), attach_wechat(mini, pay)]
        )
        with serve(app, sock), httpx.Client(base_url=base, timeout=30) as api:
            fleet = stack.start_fleet(stack.credentials[:3], heartbeat_s=60, unlock_window_s=2)
            fleet.wait_all_online()
            w = World(stack, Env(api, standin, stack.db, pay, settings), fleet)
            for n in range(3):
                w.kiosk(n).set_rider(take_after(0.05))
                w.wait_stocked(w.kiosk(n))
            yield w
            assert w.invariants() == []


def test_rider_logs_in_pays_rents_and_returns_at_another_kiosk(world: World) -> None:
    auth = world.rider("o-happy")
    k1, k2 = world.kiosk(0), world.kiosk(1)
    before = dict(k1.umbrellas())

    r = world.rent(auth, k1.kiosk_id, "tap-1")

    assert r.status_code == 201, r.text
    rental = r.json()
    assert rental["status"] == "active"
    slot, tag = rental["slot_no"], rental["umbrella_tag"]
    assert before[slot].hex().upper() == tag
    assert slot not in k1.umbrellas()  # it really left the simulated kiosk
    assert rental["started_at"] is not None
    assert rental["deadline_at"] is not None
    # The answer's start is the kiosk's answer; the slot event just before it is the exact
    # moment the umbrella left, and moves the start (and deadline) back to it, never later.
    current = world.current(auth)
    assert current is not None
    moved = ("started_at", "deadline_at")
    assert {k: v for k, v in current.items() if k not in moved} == {
        k: v for k, v in rental.items() if k not in moved
    }
    for k in moved:
        gap = datetime.fromisoformat(rental[k]) - datetime.fromisoformat(current[k])
        assert timedelta(0) <= gap < timedelta(seconds=1)

    free = k2.empty_slots()[0]
    k2.insert_umbrella(free, bytes.fromhex(tag))

    def returned() -> dict[str, Any]:
        assert world.current(auth) is None
        history = world.api.get("/api/v1/rentals", headers=auth).json()["items"]
        assert history[0]["status"] == "returned"
        return dict(history[0])

    done = eventually(returned)
    assert (done["return_kiosk_id"], done["id"]) == (k2.kiosk_id, rental["id"])
    assert world.held_fen(auth) == 3000
    assert world.entries(EntryKind.DEPOSIT_FORFEITED) == 0
    assert {"rental_started", "rental_returned"} <= set(world.notification_kinds())
    assert world.invariants() == []


@pytest.mark.parametrize("stack", ["production"], indirect=True)
def test_rent_is_answered_on_the_kiosks_word_while_the_bridge_is_still_recording_it(
    world: World,
) -> None:
    """The rider's answer does not wait for the bridge's batch. Here another transaction
    holds the kiosk's slot rows (PostgreSQL row locks), so the batch that records the
    kiosk's report waits; the rent still answers, active. Once the batch commits, the two
    meet on one rental: still active, its start no later, one rental-started notice."""
    auth = world.rider("o-early")
    k = world.kiosk(0)
    with world.stack.db.engine.connect() as held:
        held.execute(
            text("SELECT slot_no FROM slots WHERE kiosk_id = :k FOR UPDATE"), {"k": k.kiosk_id}
        )
        r = world.api.post(
            "/api/v1/rentals",
            json={"kiosk_id": k.kiosk_id},
            headers={**auth, "Idempotency-Key": "tap-1"},
        )
        assert r.status_code == 201, r.text
        rental = r.json()
        assert rental["status"] == "active"
        assert rental["slot_no"] not in k.umbrellas()
        slots = {s["slot_no"]: s for s in world.stack.kiosk(k.kiosk_id)["slots"]}
        assert slots[rental["slot_no"]]["status"] == "umbrella"  # not recorded yet
        held.rollback()

    world.wait_slot_recorded(k.kiosk_id, rental["slot_no"])
    after = world.current(auth)
    assert after is not None
    assert (after["id"], after["status"]) == (rental["id"], "active")
    started = datetime.fromisoformat(after["started_at"])
    assert started <= datetime.fromisoformat(rental["started_at"])
    assert world.notification_kinds().count("rental_started") == 1
    umbrella = world.api.get(f"/api/v1/ops/umbrellas/{rental['umbrella_tag']}").json()
    assert umbrella["state"] == "on_rent"
    assert world.held_fen(auth) == 3000


def test_rider_who_keeps_the_umbrella_seven_days_loses_the_deposit_once_and_is_told(
    world: World,
) -> None:
    auth = world.rider("o-keeper")
    rental = world.rent(auth, world.kiosk(0).kiosk_id, "tap-1").json()
    assert rental["status"] == "active"

    clock.advance(timedelta(days=7, minutes=1))
    run_in_chunks(world.stack.db, rental_jobs.forfeit_overdue)
    run_in_chunks(world.stack.db, rental_jobs.forfeit_overdue)  # a second scheduler's run

    after = world.api.get(f"/api/v1/rentals/{rental['id']}", headers=auth).json()
    assert after["status"] == "forfeited"
    assert world.held_fen(auth) == 0
    assert world.entries(EntryKind.DEPOSIT_FORFEITED) == 1
    assert "deposit_forfeited" in world.notification_kinds()
    umbrella = world.api.get(f"/api/v1/ops/umbrellas/{rental['umbrella_tag']}").json()
    assert umbrella["state"] == "forfeited"
    assert world.invariants() == []


def test_return_seen_before_the_deadline_by_an_offline_kiosk_undoes_the_forfeiture(
    world: World,
) -> None:
    auth = world.rider("o-late-kiosk")
    rental = world.rent(auth, world.kiosk(0).kiosk_id, "tap-1").json()
    k2 = world.kiosk(1)
    k2.disconnect()
    k2.wait_offline()
    # The rider returns the umbrella in time, but the kiosk is offline and keeps the event.
    k2.insert_umbrella(k2.empty_slots()[0], bytes.fromhex(rental["umbrella_tag"]))

    clock.advance(timedelta(days=7, minutes=1))
    run_in_chunks(world.stack.db, rental_jobs.forfeit_overdue)
    assert world.held_fen(auth) == 0

    k2.reconnect()  # replays the buffered return with its original timestamp

    def reversed_() -> None:
        after = world.api.get(f"/api/v1/rentals/{rental['id']}", headers=auth).json()
        assert after["status"] == "returned"
        assert after["returned_at"] < rental["deadline_at"]

    eventually(reversed_)
    assert world.held_fen(auth) == 3000
    assert world.entries(EntryKind.DEPOSIT_FORFEITED) == 1
    assert world.entries(EntryKind.FORFEITURE_REVERSED) == 1
    assert "forfeiture_reversed" in world.notification_kinds()
    assert world.invariants() == []


def _nothing_left_open(world: World, auth: dict[str, str], handle: KioskHandle, stock: int) -> None:
    assert world.current(auth) is None
    assert world.held_fen(auth) == 3000
    assert len(handle.umbrellas()) == stock
    assert world.invariants() == []


def test_rent_at_an_offline_kiosk_is_refused_with_the_reason_and_charges_nothing(
    world: World,
) -> None:
    auth = world.rider("o-offline")
    never_online = world.stack.credentials[10].kiosk_id

    r = world.rent(auth, never_online, "tap-1")

    assert r.status_code == 409, r.text
    assert r.json()["error"] == "kiosk_offline"
    assert world.current(auth) is None
    assert world.held_fen(auth) == 3000


def test_rent_the_kiosk_never_answers_times_out_and_leaves_nothing_open(world: World) -> None:
    auth = world.rider("o-silent")
    k = world.kiosk(0)
    stock = len(k.umbrellas())
    k.set_faults(lose_results=1.0)
    k.push_rider(LEAVE)

    r = world.rent(auth, k.kiosk_id, "tap-1")

    assert r.status_code == 504, r.text
    assert r.json()["error"] == "kiosk_timeout"
    _nothing_left_open(world, auth, k, stock)


def test_rent_where_every_slot_jams_fails_after_trying_three_and_charges_nothing(
    world: World,
) -> None:
    auth = world.rider("o-jam")
    k = world.kiosk(0)
    stock = len(k.umbrellas())
    k.set_faults(jam_on_unlock=1.0)

    r = world.rent(auth, k.kiosk_id, "tap-1")

    assert r.status_code == 409, r.text
    assert r.json()["error"] == "slots_jammed"
    assert r.json()["details"]["rental_id"] is not None
    _nothing_left_open(world, auth, k, stock)  # jammed umbrellas are still in their slots


def test_umbrella_nobody_takes_is_not_rented_and_the_rider_is_told(world: World) -> None:
    auth = world.rider("o-leaves")
    k = world.kiosk(0)
    stock = len(k.umbrellas())
    k.push_rider(LEAVE)

    r = world.rent(auth, k.kiosk_id, "tap-1")

    assert r.status_code == 409, r.text
    assert r.json()["error"] == "umbrella_not_taken"
    _nothing_left_open(world, auth, k, stock)


def _concurrently(*calls: Any) -> list[httpx.Response]:
    results: list[Any] = [None] * len(calls)
    go = threading.Barrier(len(calls))

    def run(i: int) -> None:
        go.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_double_tap_and_retried_request_make_one_rental(world: World) -> None:
    auth = world.rider("o-double")
    k = world.kiosk(0)
    stock = len(k.umbrellas())

    same_key = _concurrently(
        lambda: world.rent(auth, k.kiosk_id, "tap-1"), lambda: world.rent(auth, k.kiosk_id, "tap-1")
    )
    retried = world.rent(auth, k.kiosk_id, "tap-1")
    other_tap = world.rent(auth, k.kiosk_id, "tap-2")

    assert sorted(r.status_code for r in same_key) == [200, 201], [r.text for r in same_key]
    assert same_key[0].json()["id"] == same_key[1].json()["id"] == retried.json()["id"]
    assert retried.status_code == 200
    assert other_tap.status_code == 409
    assert other_tap.json()["error"] == "rental_open"
    assert len(k.umbrellas()) == stock - 1
    history = world.api.get("/api/v1/rentals", headers=auth).json()["items"]
    assert [h["status"] for h in history] == ["active"]


def test_two_riders_racing_for_the_last_umbrella_one_wins_the_other_is_told(
    world: World,
) -> None:
    k = world.kiosk(2)
    for slot in sorted(k.umbrellas())[1:]:
        k.remove_umbrella(slot)  # staff empty the kiosk but one
    world.wait_stocked(k)
    a, b = world.rider("o-racer-a"), world.rider("o-racer-b")

    answers = _concurrently(
        lambda: world.rent(a, k.kiosk_id, "tap-a"), lambda: world.rent(b, k.kiosk_id, "tap-b")
    )

    codes = sorted(r.status_code for r in answers)
    assert codes == [201, 409], [r.text for r in answers]
    loser = next(r for r in answers if r.status_code == 409)
    assert loser.json()["error"] == "no_umbrella_available"
    assert k.umbrellas() == {}
    assert world.invariants() == []


def test_operator_sees_a_stuck_rental_and_force_ends_it_with_a_reason_kept_in_the_audit_log(
    world: World,
) -> None:
    auth = world.rider("o-stuck")
    rental = world.rent(auth, world.kiosk(0).kiosk_id, "tap-1").json()
    clock.advance(timedelta(days=7, minutes=20))  # and the forfeiture sweep has not run

    stuck = world.api.get("/api/v1/ops/rentals/stuck").json()
    assert [r["id"] for r in stuck["overdue"]] == [rental["id"]]
    assert stuck["counts_by_status"] == {"active": 1}

    too_short = world.api.post(f"/api/v1/ops/rentals/{rental['id']}/end", json={"reason": "x"})
    ended = world.api.post(
        f"/api/v1/ops/rentals/{rental['id']}/end",
        json={"reason": "rider brought it to the service desk"},
        headers={"X-Operator": "ops-li"},
    )
    again = world.api.post(
        f"/api/v1/ops/rentals/{rental['id']}/end", json={"reason": "second click"}
    )
    missing = world.api.post("/api/v1/ops/rentals/999999/end", json={"reason": "no such"})

    assert too_short.status_code == 422
    assert ended.status_code == 200, ended.text
    body = ended.json()
    assert body["status"] == "ended"
    assert [(a["actor"], a["action"], a["reason"]) for a in body["audit"]] == [
        ("ops-li", "rental.force_end", "rider brought it to the service desk")
    ]
    assert again.status_code == 409
    assert again.json()["error"] == "rental_not_endable"
    assert missing.status_code == 404
    run_in_chunks(world.stack.db, rental_jobs.forfeit_overdue)  # nothing left to forfeit
    assert world.current(auth) is None
    assert world.held_fen(auth) == 3000
    assert world.entries(EntryKind.DEPOSIT_FORFEITED) == 0


def test_riders_see_only_their_own_rentals_and_bad_requests_change_nothing(
    world: World,
) -> None:
    a = world.rider("o-owner")
    rental = world.rent(a, world.kiosk(0).kiosk_id, "tap-1").json()
    b = world.rider("o-nosy")
    unpaid = wx_login(world.env, "o-unpaid")

    assert world.api.get(f"/api/v1/rentals/{rental['id']}", headers=b).status_code == 404
    assert world.api.get("/api/v1/rentals", headers=b).json()["items"] == []
    assert world.api.get("/api/v1/rentals/current").status_code == 401
    unknown = world.rent(b, "K-NOPE", "tap-1")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_kiosk"
    no_deposit = world.rent(unpaid, world.kiosk(0).kiosk_id, "tap-1")
    assert no_deposit.status_code == 409
    assert no_deposit.json()["error"] == "deposit_required"
    no_key = world.api.post(
        "/api/v1/rentals", json={"kiosk_id": world.kiosk(0).kiosk_id}, headers=b
    )
    assert no_key.status_code == 422
    assert world.api.get("/api/v1/ops/umbrellas/FFFFFFFF").status_code == 404
    assert world.current(b) is None
    assert world.api.get("/api/v1/rentals", headers=unpaid).json()["items"] == []
