"""Rider login and the 30-yuan deposit through WeChat Pay, over real HTTP both ways.

The API runs under uvicorn on a free port, so the WeChat stand-in's notifications reach it
the way WeChat's would; the test talks to it with httpx. Both databases (`db`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.app import create_app
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import MemorySharedState
from server.deposits.jobs import reconcile_pending_deposits
from server.ledger import service as ledger
from server.models import DepositPayment, DepositStatus, EntryKind, JournalEntry, RiderSession
from server.payments import signing
from server.runtime import wechat_hooks
from server.scheduler.runner import build_scheduler
from server.wechat.standin import SentNotification, StandInError, WeChatStandIn
from tests.services import free_port
from tests.wechat_env import (
    FAST_RETRIES,
    FORGER_KEY,
    NOTIFY_PATH,
    Env,
    wechat_env,
)


@pytest.fixture
def env(db: Database, standin: WeChatStandIn, tmp_path: Path) -> Iterator[Env]:
    with wechat_env(db, standin, tmp_path) as e:
        yield e


@pytest.fixture
def env_without_notifications(
    db: Database, standin: WeChatStandIn, tmp_path: Path
) -> Iterator[Env]:
    """The notify URL points at a closed port: every notification attempt fails."""
    closed = f"http://127.0.0.1:{free_port()}{NOTIFY_PATH}"
    with wechat_env(db, standin, tmp_path, notify_url=closed) as e:
        yield e


# -- helpers --------------------------------------------------------------------------------


def _login(env: Env, openid: str | None = None) -> dict[str, str]:
    r = env.api.post("/api/v1/riders/login", json={"code": env.standin.issue_login_code(openid)})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _start_deposit(env: Env, auth: dict[str, str], key: str = "tap-1") -> httpx.Response:
    return env.api.post("/api/v1/deposits", headers={**auth, "Idempotency-Key": key})


def _me(env: Env, auth: dict[str, str]) -> dict[str, Any]:
    r = env.api.get("/api/v1/riders/me", headers=auth)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _money(env: Env) -> tuple[int, list[str]]:
    """(number of ledger entries, invariant violations)."""
    with env.db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(JournalEntry)) or 0), (
            ledger.check_invariants(s)
        )


def _payments(env: Env) -> list[DepositPayment]:
    with env.db.transaction() as s:
        return list(s.scalars(select(DepositPayment).order_by(DepositPayment.id)))


def _replay(env: Env, body: str, headers: dict[str, str]) -> httpx.Response:
    return env.api.post(
        NOTIFY_PATH, content=body.encode(), headers={**headers, "Content-Type": "application/json"}
    )


def _paid_resource(env: Env, out_trade_no: str, **over: Any) -> dict[str, Any]:
    """What a TRANSACTION.SUCCESS resource for this order would say (without paying it)."""
    order = env.standin.find_order(out_trade_no)
    resource = {
        **order.view(),
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "transaction_id": "4200000000202611260000000001",
        "success_time": "2026-11-26T12:00:00+08:00",
    }
    resource.update(over)
    return resource


def _notification(env: Env, resource: dict[str, Any]) -> str:
    return env.standin.build_notification(
        "TRANSACTION.SUCCESS", "支付成功", "transaction", resource
    )


def _assert_nothing_moved(env: Env, auth: dict[str, str]) -> None:
    assert _me(env, auth)["deposit"]["state"] == "pending"
    assert _money(env) == (0, [])
    assert [p.status for p in _payments(env)] == [DepositStatus.PENDING]


# -- login ----------------------------------------------------------------------------------


def test_login_exchanges_the_code_and_keeps_only_the_token_hash(env: Env) -> None:
    code = env.standin.issue_login_code("oRider_Login_000000000000001")
    r = env.api.post("/api/v1/riders/login", json={"code": code})

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert "session_key" not in r.text
    me = _me(env, {"Authorization": f"Bearer {body['token']}"})
    assert me["rider_id"] == body["rider_id"]
    assert me["deposit"] == {
        "state": "none",
        "amount_fen": 0,
        "held_fen": 0,
        "payment_id": None,
        "out_trade_no": None,
        "paid_at": None,
        "refund_status": None,
        "out_refund_no": None,
    }
    assert me["current_rental"] is None
    with env.db.transaction() as s:
        stored = s.scalars(select(RiderSession)).one()
        assert stored.token_hash != body["token"]
        assert stored.session_key == env.standin.sessions["oRider_Login_000000000000001"]

    # The same WeChat user logging in again is the same rider.
    again = env.api.post(
        "/api/v1/riders/login",
        json={"code": env.standin.issue_login_code("oRider_Login_000000000000001")},
    )
    assert again.json()["rider_id"] == body["rider_id"]


def test_wechat_login_errors_become_clear_api_errors(env: Env) -> None:
    bad = env.api.post("/api/v1/riders/login", json={"code": "not-a-code"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_login_code"

    code = env.standin.issue_login_code()
    assert env.api.post("/api/v1/riders/login", json={"code": code}).status_code == 200
    used = env.api.post("/api/v1/riders/login", json={"code": code})
    assert (used.status_code, used.json()["error"]) == (400, "login_code_used")

    env.standin.fail_next_code2session(45011, -1)
    limited = env.api.post("/api/v1/riders/login", json={"code": env.standin.issue_login_code()})
    assert (limited.status_code, limited.json()["error"]) == (429, "wechat_rate_limited")
    busy = env.api.post("/api/v1/riders/login", json={"code": env.standin.issue_login_code()})
    assert (busy.status_code, busy.json()["error"]) == (503, "wechat_busy")

    empty = env.api.post("/api/v1/riders/login", json={"code": ""})
    assert empty.status_code == 422


def test_rider_endpoints_need_a_live_token(env: Env) -> None:
    assert env.api.get("/api/v1/riders/me").status_code == 401
    wrong = env.api.get("/api/v1/riders/me", headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized")
    assert env.api.post("/api/v1/deposits", headers={"Idempotency-Key": "k"}).status_code == 401

    auth = _login(env)
    assert env.api.get("/api/v1/riders/me", headers=auth).status_code == 200
    clock.advance(timedelta(seconds=3601))
    assert env.api.get("/api/v1/riders/me", headers=auth).status_code == 401


def test_clients_are_built_from_settings_and_absent_without_them(
    db: Database, standin: WeChatStandIn, tmp_path: Path
) -> None:
    facts = json.loads(standin.write_credentials(tmp_path / "wechat").read_text())
    settings = Settings(
        data_dir=tmp_path,
        wechat_api_base_url=facts["url"],
        wechat_appid=facts["appid"],
        wechat_app_secret=facts["secret"],
        wechatpay_base_url=facts["url"],
        wechatpay_mchid=facts["mchid"],
        wechatpay_merchant_serial=facts["merchant_serial"],
        wechatpay_merchant_private_key_file=str(tmp_path / "wechat/merchant_private_key.pem"),
        wechatpay_apiv3_key=facts["apiv3_key"],
        wechatpay_platform_serial=facts["platform_serial"],
        wechatpay_platform_public_key_file=str(tmp_path / "wechat/platform_public_key.pem"),
        wechatpay_notify_url="https://umbrella.example.com" + NOTIFY_PATH,
    )
    with TestClient(create_app(settings, db=db, hooks=wechat_hooks(settings))) as api:
        r = api.post("/api/v1/riders/login", json={"code": standin.issue_login_code()})
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        d = api.post("/api/v1/deposits", headers={**auth, "Idempotency-Key": "k"})
        assert d.status_code == 201, d.text
        order = standin.find_order(d.json()["out_trade_no"])
        assert order.notify_url == settings.wechatpay_notify_url
        params = d.json()["request_payment"]
        message = signing.pay_sign_message(
            params["appId"], params["timeStamp"], params["nonceStr"], params["package"]
        )
        assert signing.rsa_verify(standin.merchant_public_key, message, params["paySign"])

    # The scheduler reconciles lost notifications only where WeChat Pay is configured.
    jobs = {j.id for j in build_scheduler(settings, db, MemorySharedState()).get_jobs()}
    assert "reconcile" in jobs

    bare = Settings(data_dir=tmp_path)
    bare_jobs = {j.id for j in build_scheduler(bare, db, MemorySharedState()).get_jobs()}
    assert "reconcile" not in bare_jobs
    with TestClient(create_app(bare, db=db, hooks=wechat_hooks(bare))) as api:
        r = api.post("/api/v1/riders/login", json={"code": "whatever"})
        assert (r.status_code, r.json()["error"]) == (503, "unavailable")
        n = api.post(NOTIFY_PATH, content=b"{}")
        assert (n.status_code, n.json()["code"]) == (503, "FAIL")


# -- deposit --------------------------------------------------------------------------------


def test_deposit_is_held_after_the_verified_notification_and_replays_move_money_once(
    env: Env,
) -> None:
    auth = _login(env)
    r = _start_deposit(env, auth)
    assert r.status_code == 201, r.text
    payment = r.json()
    assert (payment["amount_fen"], payment["status"]) == (3000, "pending")
    params = payment["request_payment"]
    order = env.standin.find_order(payment["out_trade_no"])
    assert order.total == 3000
    assert params["appId"] == env.standin.appid
    assert params["package"] == f"prepay_id={order.prepay_id}"
    assert params["signType"] == "RSA"
    message = signing.pay_sign_message(
        params["appId"], params["timeStamp"], params["nonceStr"], params["package"]
    )
    assert signing.rsa_verify(env.standin.merchant_public_key, message, params["paySign"])
    assert _me(env, auth)["deposit"]["state"] == "pending"

    env.standin.pay(order.prepay_id)
    sent = env.standin.notifications[-1]
    assert sent.wait_acknowledged()
    assert sent.attempts == [204]

    me = _me(env, auth)["deposit"]
    assert (me["state"], me["held_fen"], me["amount_fen"]) == ("held", 3000, 3000)
    with env.db.transaction() as s:
        entries = ledger.entries_for_rider(s, str(me_rider_id(env, auth)))
        assert [(e.kind, e.amount_fen, e.idempotency_key) for e in entries] == [
            (EntryKind.DEPOSIT_RECEIVED, 3000, order.transaction_id)
        ]
        assert entries[0].reference == f"payment:{order.out_trade_no}"
        assert ledger.check_invariants(s) == []

    for _ in range(10):
        replay = _replay(env, sent.body, sent.headers)
        assert replay.status_code == 204, replay.text
    assert _money(env) == (1, [])
    assert _me(env, auth)["deposit"]["held_fen"] == 3000
    [stored] = _payments(env)
    assert (stored.status, stored.transaction_id) == (DepositStatus.HELD, order.transaction_id)

    # A held deposit covers the rider: a second one is refused, the old key shows it held.
    second = _start_deposit(env, auth, key="tap-2")
    assert (second.status_code, second.json()["error"]) == (409, "deposit_already_held")
    same = _start_deposit(env, auth)
    assert same.status_code == 200
    assert (same.json()["status"], same.json()["request_payment"]) == ("held", None)


def me_rider_id(env: Env, auth: dict[str, str]) -> int:
    return int(_me(env, auth)["rider_id"])


def test_forged_stale_and_tampered_notifications_are_refused_and_change_nothing(
    env: Env,
) -> None:
    auth = _login(env)
    out_trade_no = _start_deposit(env, auth).json()["out_trade_no"]
    resource = _paid_resource(env, out_trade_no)
    body = _notification(env, resource)

    forged = _replay(env, body, env.standin.sign_headers(body, private_key=FORGER_KEY))
    assert forged.status_code == 401
    assert forged.json()["code"] == "FAIL"
    assert "BadSignature" in forged.json()["message"]
    _assert_nothing_moved(env, auth)

    unknown = _replay(env, body, env.standin.sign_headers(body, serial="0123ABCD"))
    assert (unknown.status_code, unknown.json()["code"]) == (401, "FAIL")
    _assert_nothing_moved(env, auth)

    headers = env.standin.sign_headers(body)
    clock.advance(timedelta(minutes=6))
    stale = _replay(env, body, headers)
    assert (stale.status_code, stale.json()["code"]) == (401, "FAIL")
    assert "StaleTimestamp" in stale.json()["message"]
    clock.reset()
    _assert_nothing_moved(env, auth)

    envelope = json.loads(body)
    ct = envelope["resource"]["ciphertext"]
    envelope["resource"]["ciphertext"] = ct[:10] + ("A" if ct[10] != "A" else "B") + ct[11:]
    tampered = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    refused = _replay(env, tampered, env.standin.sign_headers(tampered))
    assert (refused.status_code, refused.json()["code"]) == (400, "FAIL")
    assert "UndecryptableResource" in refused.json()["message"]
    _assert_nothing_moved(env, auth)

    unsigned = env.api.post(NOTIFY_PATH, json={"out_trade_no": out_trade_no, "paid": True})
    assert (unsigned.status_code, unsigned.json()["code"]) == (400, "FAIL")
    _assert_nothing_moved(env, auth)

    # Genuinely signed, but not our deposit: a wrong amount or payer settles nothing.
    for bad in (
        {"amount": {"total": 1, "currency": "CNY"}},
        {"payer": {"openid": "oSomebody_Else_0000000000000"}},
        {"mchid": "1900000999"},
    ):
        b = _notification(env, _paid_resource(env, out_trade_no, **bad))
        mismatch = _replay(env, b, env.standin.sign_headers(b))
        assert (mismatch.status_code, mismatch.json()["code"]) == (400, "FAIL")
        _assert_nothing_moved(env, auth)

    # Control: the very same resource, genuinely signed and intact, is accepted.
    assert _replay(env, body, env.standin.sign_headers(body)).status_code == 204
    assert _me(env, auth)["deposit"]["state"] == "held"
    assert _money(env) == (1, [])


def test_double_tap_with_the_same_idempotency_key_makes_one_payment(env: Env) -> None:
    auth = _login(env)
    first = _start_deposit(env, auth, key="tap-double")
    second = _start_deposit(env, auth, key="tap-double")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["out_trade_no"] == second.json()["out_trade_no"]
    assert first.json()["request_payment"]["package"] == second.json()["request_payment"]["package"]

    missing = env.api.post("/api/v1/deposits", headers=auth)
    assert missing.status_code == 422
    # Two taps at once, with a new key: still one payment for that key.
    results: list[httpx.Response] = []

    def tap() -> None:
        with httpx.Client(base_url=str(env.api.base_url), timeout=10) as c:
            results.append(c.post("/api/v1/deposits", headers={**auth, "Idempotency-Key": "k2"}))

    threads = [threading.Thread(target=tap) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [200, 201], [r.text for r in results]
    assert len({r.json()["out_trade_no"] for r in results}) == 1

    assert len(_payments(env)) == 2
    assert len(env.standin.orders) == 2


def test_a_client_claim_of_payment_alone_never_holds_a_deposit(env: Env) -> None:
    auth = _login(env)
    payment = _start_deposit(env, auth).json()

    # The mini-program says "paid" (wx.requestPayment success) and asks for a refresh: the
    # server asks WeChat Pay, which says NOTPAY.
    r = env.api.post(f"/api/v1/deposits/{payment['id']}/refresh", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    _assert_nothing_moved(env, auth)

    with env.db.transaction() as s:
        later = clock.now() + timedelta(minutes=20)  # inside the payment window
        assert reconcile_pending_deposits(s, env.pay, later, timedelta(minutes=5)) == 0
    _assert_nothing_moved(env, auth)

    other = _login(env)
    foreign = env.api.post(f"/api/v1/deposits/{payment['id']}/refresh", headers=other)
    assert foreign.status_code == 404


def _pay_without_notification(env: Env, auth: dict[str, str]) -> tuple[str, SentNotification]:
    out_trade_no = _start_deposit(env, auth).json()["out_trade_no"]
    env.standin.pay(out_trade_no)
    sent = env.standin.notifications[-1]
    assert sent.finished.wait(10)
    assert not sent.acknowledged.is_set()
    assert len(sent.attempts) == 1 + len(FAST_RETRIES)
    assert all(isinstance(a, str) for a in sent.attempts)  # connection errors only
    assert _me(env, auth)["deposit"]["state"] == "pending"
    return out_trade_no, sent


def test_payment_whose_notification_never_arrives_is_settled_by_reconciliation(
    env_without_notifications: Env,
) -> None:
    env = env_without_notifications
    auth = _login(env)
    out_trade_no, sent = _pay_without_notification(env, auth)

    with env.db.transaction() as s:
        # Too young: left for the notification.
        assert reconcile_pending_deposits(s, env.pay, clock.now(), timedelta(minutes=5)) == 0
    assert _me(env, auth)["deposit"]["state"] == "pending"

    later = clock.now() + timedelta(minutes=10)
    with env.db.transaction() as s:
        assert reconcile_pending_deposits(s, env.pay, later, timedelta(minutes=5)) == 1
    me = _me(env, auth)["deposit"]
    assert (me["state"], me["held_fen"], me["out_trade_no"]) == ("held", 3000, out_trade_no)
    assert _money(env) == (1, [])

    with env.db.transaction() as s:
        assert reconcile_pending_deposits(s, env.pay, later, timedelta(minutes=5)) == 0
    # The notification finally getting through afterwards moves nothing more.
    assert _replay(env, sent.body, env.standin.sign_headers(sent.body)).status_code == 204
    assert _money(env) == (1, [])
    [payment] = _payments(env)
    assert payment.transaction_id == env.standin.find_order(out_trade_no).transaction_id


def _queries(env: Env, out_trade_no: str) -> int:
    return sum(
        1
        for method, path, _ in env.standin.requests_seen
        if method == "GET" and out_trade_no in path
    )


def test_an_order_left_unpaid_is_closed_after_the_payment_window_and_never_asked_again(
    env: Env,
) -> None:
    auth = _login(env)
    started = _start_deposit(env, auth).json()
    out_trade_no = started["out_trade_no"]
    order = env.standin.find_order(out_trade_no)
    # The prepay told WeChat how long the rider has to pay.
    assert order.expires_at is not None
    window = order.expires_at - clock.now()
    assert timedelta(minutes=29) < window <= timedelta(minutes=30)

    with env.db.transaction() as s:  # inside the window (and its grace): left alone
        later = clock.now() + timedelta(minutes=33)
        assert reconcile_pending_deposits(s, env.pay, later, timedelta(minutes=2)) == 0
    _assert_nothing_moved(env, auth)
    assert order.state == "NOTPAY"

    closing = clock.now() + timedelta(minutes=36)
    with env.db.transaction() as s:
        assert reconcile_pending_deposits(s, env.pay, closing, timedelta(minutes=2)) == 0
    assert order.state == "CLOSED"  # closed at WeChat: the sheet can no longer be paid
    assert [p.status for p in _payments(env)] == [DepositStatus.CLOSED]
    assert _me(env, auth)["deposit"]["state"] == "none"
    assert _money(env) == (0, [])
    with pytest.raises(StandInError):
        env.standin.pay(out_trade_no)

    # A closed order is not queried again on later runs.
    asked = _queries(env, out_trade_no)
    with env.db.transaction() as s:
        assert reconcile_pending_deposits(s, env.pay, closing, timedelta(minutes=2)) == 0
    assert _queries(env, out_trade_no) == asked

    # The rider starts over with a new order and pays it.
    again = _start_deposit(env, auth, key="tap-2").json()
    assert again["out_trade_no"] != out_trade_no
    env.standin.pay(again["out_trade_no"])
    assert env.standin.notifications[-1].wait_acknowledged()
    assert _me(env, auth)["deposit"]["state"] == "held"
    assert [p.status for p in _payments(env)] == [DepositStatus.CLOSED, DepositStatus.HELD]
    assert _money(env) == (1, [])


def test_an_order_paid_as_it_is_being_closed_is_held_not_closed(
    env_without_notifications: Env,
) -> None:
    env = env_without_notifications
    auth = _login(env)
    out_trade_no = _start_deposit(env, auth).json()["out_trade_no"]
    # The job finds the order unpaid; the rider pays before the close reaches WeChat, which
    # then refuses to close it (ORDERPAID). Its notification is lost.
    env.standin.before_next("close_order", lambda: env.standin.pay(out_trade_no))

    closing = clock.now() + timedelta(minutes=36)
    with env.db.transaction() as s:
        assert reconcile_pending_deposits(s, env.pay, closing, timedelta(minutes=2)) == 1
    assert env.standin.find_order(out_trade_no).state == "SUCCESS"
    assert ("POST", f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close", 400) in (
        env.standin.requests_seen
    )
    me = _me(env, auth)["deposit"]
    assert (me["state"], me["held_fen"]) == ("held", 3000)
    assert [p.status for p in _payments(env)] == [DepositStatus.HELD]
    assert _money(env) == (1, [])


def test_refresh_after_payment_holds_the_deposit_through_a_verified_order_query(
    env_without_notifications: Env,
) -> None:
    env = env_without_notifications
    auth = _login(env)
    _pay_without_notification(env, auth)
    payment_id = _me(env, auth)["deposit"]["payment_id"]

    r = env.api.post(f"/api/v1/deposits/{payment_id}/refresh", headers=auth)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["request_payment"]) == ("held", None)
    assert _money(env) == (1, [])


def test_notification_replays_racing_the_reconciliation_job_move_money_once(
    env_without_notifications: Env,
) -> None:
    env = env_without_notifications
    auth = _login(env)
    _, sent = _pay_without_notification(env, auth)
    body = sent.body
    later = clock.now() + timedelta(minutes=10)
    statuses: list[int] = []
    settled: list[int] = []
    errors: list[BaseException] = []
    go = threading.Barrier(8)

    def replay() -> None:
        go.wait()
        with httpx.Client(base_url=str(env.api.base_url), timeout=30) as c:
            r = c.post(
                NOTIFY_PATH,
                content=body.encode(),
                headers={**env.standin.sign_headers(body), "Content-Type": "application/json"},
            )
            statuses.append(r.status_code)

    def reconcile() -> None:
        go.wait()
        try:
            with env.db.transaction() as s:
                settled.append(reconcile_pending_deposits(s, env.pay, later, timedelta(minutes=5)))
        except Exception as exc:  # a lost SQLite write lock: the job would simply run again
            errors.append(exc)

    threads = [threading.Thread(target=replay) for _ in range(6)]
    threads += [threading.Thread(target=reconcile) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert 204 in statuses
    assert sum(settled) <= 1
    assert _money(env) == (1, [])
    assert _me(env, auth)["deposit"]["held_fen"] == 3000
    # Whatever lost the race, WeChat's next retry (or the next job run) finds it settled.
    assert _replay(env, body, env.standin.sign_headers(body)).status_code == 204
    with env.db.transaction() as s:
        assert reconcile_pending_deposits(s, env.pay, later, timedelta(minutes=5)) == 0
    assert _money(env) == (1, [])
    assert all(s in (204, 500, 503) for s in statuses), statuses
