"""Withdrawing the deposit: refunded through WeChat Pay v3, retried until it succeeds, money
moved once (SPEC §2 Deposit, §3). The API runs under uvicorn and the WeChat stand-in
answers and notifies over real HTTP; both databases (`db`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from server.core.clock import clock
from server.core.db import Database
from server.deposits.jobs import retry_refunds
from server.ledger import service as ledger
from server.models import (
    DepositPayment,
    DepositRefund,
    DepositStatus,
    EntryKind,
    JournalEntry,
    Notification,
    RefundStatus,
    Rental,
    RentalStatus,
)
from server.notifications import rules as notification_rules
from server.wechat.standin import WeChatStandIn
from tests.integration.rows import add_kiosks
from tests.services import free_port
from tests.wechat_env import (
    FORGER_KEY,
    REFUND_NOTIFY_PATH,
    Env,
    last_notification,
    login,
    me,
    notifications_of,
    pay_deposit,
    post_signed,
    wechat_env,
)

WITHDRAW = "/api/v1/deposits/withdraw"


@pytest.fixture
def env(db: Database, standin: WeChatStandIn, tmp_path: Path) -> Iterator[Env]:
    with wechat_env(db, standin, tmp_path) as e:
        yield e


@pytest.fixture
def env_without_refund_notifications(
    db: Database, standin: WeChatStandIn, tmp_path: Path
) -> Iterator[Env]:
    """Refund notifications go to a closed port: every attempt fails (payments still arrive)."""
    closed = f"http://127.0.0.1:{free_port()}{REFUND_NOTIFY_PATH}"
    with wechat_env(db, standin, tmp_path, refund_notify_url=closed) as e:
        yield e


# -- helpers --------------------------------------------------------------------------------


def _held_rider(env: Env) -> tuple[dict[str, str], int, str]:
    """A logged-in rider whose deposit is held: (auth header, rider id, out_trade_no)."""
    auth = login(env)
    out_trade_no = pay_deposit(env, auth)
    state = me(env, auth)
    assert (state["deposit"]["state"], state["deposit"]["held_fen"]) == ("held", 3000)
    return auth, int(state["rider_id"]), out_trade_no


def _withdraw(env: Env, auth: dict[str, str]) -> httpx.Response:
    return env.api.post(WITHDRAW, headers=auth)


def _eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for what WeChat does on its own time (notifications, in the stand-in's threads)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _wait_refund_requested(env: Env) -> DepositRefund:
    """Wait until the withdrawal's refund request was made (whatever WeChat answered)."""
    _eventually(lambda: any(r.attempts > 0 for r in _refunds(env)))
    [refund] = _refunds(env)
    return refund


def _wait_refund_notification_acknowledged(env: Env) -> None:
    _eventually(lambda: bool(notifications_of(env, "REFUND.SUCCESS")))
    sent = last_notification(env, "REFUND.SUCCESS")
    assert sent.wait_acknowledged(), sent.attempts


def _ledger(env: Env) -> tuple[list[tuple[str, int, str]], list[str]]:
    """((kind, fen, idempotency key) of every entry, invariant violations)."""
    with env.db.transaction() as s:
        entries = [
            (str(e.kind), e.amount_fen, e.idempotency_key)
            for e in s.scalars(select(JournalEntry).order_by(JournalEntry.id))
        ]
        return entries, ledger.check_invariants(s)


def _refunded_entries(env: Env) -> list[tuple[str, int, str]]:
    entries, problems = _ledger(env)
    assert problems == []
    return [e for e in entries if e[0] == EntryKind.DEPOSIT_REFUNDED]


def _refunds(env: Env) -> list[DepositRefund]:
    with env.db.transaction() as s:
        return list(s.scalars(select(DepositRefund).order_by(DepositRefund.id)))


def _payment_status(env: Env, out_trade_no: str) -> DepositStatus:
    with env.db.transaction() as s:
        payment = s.scalars(
            select(DepositPayment).where(DepositPayment.out_trade_no == out_trade_no)
        ).one()
        return payment.status


def _refund_notifications_queued(env: Env) -> list[Notification]:
    with env.db.transaction() as s:
        return list(
            s.scalars(
                select(Notification).where(Notification.kind == notification_rules.DEPOSIT_REFUNDED)
            )
        )


def _run_retry_job(env: Env, now: Any) -> int:
    with env.db.transaction(immediate=True) as s:
        return retry_refunds(s, env.pay, now, notify_url=env.refund_notify_url)


def _refund_resource(env: Env, out_refund_no: str, **over: Any) -> dict[str, Any]:
    """What WeChat's REFUND.SUCCESS resource says of this refund (without completing it)."""
    refund = env.standin.refunds[out_refund_no]
    resource: dict[str, Any] = {
        "mchid": env.standin.mchid,
        "out_trade_no": refund.out_trade_no,
        "transaction_id": refund.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": "SUCCESS",
        "success_time": "2026-11-26T12:00:00+08:00",
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": refund.total,
            "refund": refund.refund,
            "payer_total": refund.total,
            "payer_refund": refund.refund,
        },
    }
    resource.update(over)
    return resource


def _refund_notification(env: Env, resource: dict[str, Any], event: str = "REFUND.SUCCESS") -> str:
    return env.standin.build_notification(event, "退款成功", "refund", resource)


def _assert_still_refunding(env: Env, auth: dict[str, str], out_trade_no: str) -> None:
    """Nothing settled: the payment is refunding, the ledger still holds the deposit."""
    assert _payment_status(env, out_trade_no) == DepositStatus.REFUNDING
    assert [r.status for r in _refunds(env)] == [RefundStatus.PROCESSING]
    assert _refunded_entries(env) == []
    assert me(env, auth)["deposit"]["held_fen"] == 3000
    assert _refund_notifications_queued(env) == []


# -- the happy path -------------------------------------------------------------------------


def test_withdrawal_refunds_the_deposit_once_wechat_reports_the_refund(env: Env) -> None:
    auth, rider_id, out_trade_no = _held_rider(env)

    r = _withdraw(env, auth)

    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["state"], body["amount_fen"]) == ("refunding", 3000)
    [refund] = body["refunds"]
    out_refund_no = refund["out_refund_no"]
    assert (refund["status"], refund["amount_fen"]) == ("processing", 3000)
    at_wechat = env.standin.refunds[out_refund_no]
    assert (at_wechat.out_trade_no, at_wechat.refund, at_wechat.total) == (out_trade_no, 3000, 3000)
    assert env.standin.find_order(out_trade_no).refunded == 3000

    _wait_refund_notification_acknowledged(env)
    assert last_notification(env, "REFUND.SUCCESS").attempts == [204]

    deposit = me(env, auth)["deposit"]
    assert (deposit["state"], deposit["held_fen"]) == ("refunded", 0)
    latest = env.api.get("/api/v1/deposits/refund", headers=auth)
    assert latest.status_code == 200, latest.text
    assert (latest.json()["out_refund_no"], latest.json()["status"]) == (out_refund_no, "succeeded")
    assert latest.json()["succeeded_at"] is not None
    assert _payment_status(env, out_trade_no) == DepositStatus.REFUNDED

    entries, problems = _ledger(env)
    assert problems == []
    transaction_id = env.standin.find_order(out_trade_no).transaction_id
    assert entries == [
        (EntryKind.DEPOSIT_RECEIVED, 3000, transaction_id),
        (EntryKind.DEPOSIT_REFUNDED, 3000, out_refund_no),
    ]
    with env.db.transaction() as s:
        [entry] = [
            e for e in ledger.entries_for_rider(s, str(rider_id)) if e.kind == "deposit_refunded"
        ]
        assert entry.reference == f"refund:{out_refund_no}"
        assert ledger.rider_deposit(s, str(rider_id)) == 0
    [told] = _refund_notifications_queued(env)
    assert json.loads(told.payload)["amount_fen"] == 3000

    # The job finds nothing left to do.
    assert _run_retry_job(env, clock.now() + timedelta(hours=1)) == 0
    assert _refunded_entries(env) == [(EntryKind.DEPOSIT_REFUNDED, 3000, out_refund_no)]


def test_rider_without_a_deposit_cannot_withdraw(env: Env) -> None:
    assert env.api.post(WITHDRAW).status_code == 401
    auth = login(env)

    r = _withdraw(env, auth)
    assert (r.status_code, r.json()["error"]) == (409, "no_deposit")
    none = env.api.get("/api/v1/deposits/refund", headers=auth)
    assert (none.status_code, none.json()["error"]) == (404, "no_refund")

    # A deposit started but not paid is not held either.
    env.api.post("/api/v1/deposits", headers={**auth, "Idempotency-Key": "k"})
    assert _withdraw(env, auth).json()["error"] == "no_deposit"
    assert env.standin.refunds == {}
    assert _refunds(env) == []
    assert _ledger(env) == ([], [])


# -- refusals -------------------------------------------------------------------------------


def test_withdrawal_with_an_open_rental_is_refused_and_changes_nothing(env: Env) -> None:
    auth, rider_id, out_trade_no = _held_rider(env)
    add_kiosks(env.db, "K-WITHDRAW-1")
    now = clock.now()
    with env.db.transaction() as s:
        payment = s.scalars(select(DepositPayment)).one()
        rental = Rental(
            rider_id=rider_id,
            idempotency_key="rent-1",
            deposit_payment_id=payment.id,
            deposit_fen=3000,
            status=RentalStatus.EJECTING,
            kiosk_id="K-WITHDRAW-1",
            slot_no=3,
            attempts=1,
            created_at=now,
            reminders_sent=0,
            updated_at=now,
        )
        s.add(rental)
        s.flush()
        rental_id = rental.id

    for open_status in (RentalStatus.EJECTING, RentalStatus.ACTIVE):
        with env.db.transaction() as s:
            s.get_one(Rental, rental_id).status = open_status
        r = _withdraw(env, auth)
        assert (r.status_code, r.json()["error"]) == (409, "rental_open"), r.text
        assert "return" in r.json()["message"]
        assert _payment_status(env, out_trade_no) == DepositStatus.HELD
        assert _refunds(env) == []
        assert env.standin.refunds == {}
        assert me(env, auth)["deposit"]["state"] == "held"
        entries, problems = _ledger(env)
        assert (len(entries), problems) == (1, [])

    # Once the umbrella is back, the same rider withdraws.
    with env.db.transaction() as s:
        s.get_one(Rental, rental_id).status = RentalStatus.RETURNED
    assert _withdraw(env, auth).status_code == 202
    _wait_refund_notification_acknowledged(env)
    assert len(_refunded_entries(env)) == 1


# -- idempotency ----------------------------------------------------------------------------


def test_withdrawing_twice_makes_one_refund(env: Env) -> None:
    env.standin.auto_complete_refunds = False
    auth, _, out_trade_no = _held_rider(env)

    first = _withdraw(env, auth)
    second = _withdraw(env, auth)

    assert (first.status_code, second.status_code) == (202, 200)
    assert [(r["id"], r["out_refund_no"]) for r in first.json()["refunds"]] == [
        (r["id"], r["out_refund_no"]) for r in second.json()["refunds"]
    ]
    assert _wait_refund_requested(env).status == RefundStatus.PROCESSING
    [out_refund_no] = list(env.standin.refunds)
    assert first.json()["refunds"][0]["out_refund_no"] == out_refund_no
    assert env.standin.find_order(out_trade_no).refunded == 3000
    assert len(_refunds(env)) == 1

    env.standin.complete_refund(out_refund_no)
    _wait_refund_notification_acknowledged(env)
    third = _withdraw(env, auth)
    assert third.status_code == 200
    assert (third.json()["state"], third.json()["refunds"][0]["out_refund_no"]) == (
        "refunded",
        out_refund_no,
    )
    assert len(env.standin.refunds) == 1
    assert _refunded_entries(env) == [(EntryKind.DEPOSIT_REFUNDED, 3000, out_refund_no)]


def test_two_withdrawals_at_once_make_one_refund(env: Env) -> None:
    env.standin.auto_complete_refunds = False
    auth, _, _ = _held_rider(env)
    results: list[httpx.Response] = []
    go = threading.Barrier(2)

    def tap() -> None:
        with httpx.Client(base_url=str(env.api.base_url), timeout=30) as c:
            go.wait()
            results.append(c.post(WITHDRAW, headers=auth))

    threads = [threading.Thread(target=tap) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r.status_code for r in results) == [200, 202], [r.text for r in results]
    assert len({r.json()["refunds"][0]["out_refund_no"] for r in results}) == 1
    assert _wait_refund_requested(env).status == RefundStatus.PROCESSING
    assert len(env.standin.refunds) == 1
    assert len(_refunds(env)) == 1
    assert _ledger(env)[1] == []


def test_refund_retried_after_a_standin_failure_succeeds_once(env: Env) -> None:
    auth, _, out_trade_no = _held_rider(env)
    env.standin.fail_next_refunds(1)

    r = _withdraw(env, auth)

    # WeChat answered SYSTEM_ERROR: the withdrawal stands, the refund waits for a retry.
    assert r.status_code == 202, r.text
    assert (r.json()["state"], r.json()["refunds"][0]["status"]) == ("refunding", "pending")
    refund = _wait_refund_requested(env)
    assert env.standin.refunds == {}
    assert (refund.status, refund.attempts) == (RefundStatus.PENDING, 1)
    assert refund.last_error is not None
    assert "SYSTEM_ERROR" in refund.last_error
    assert refund.next_attempt_at is not None
    assert refund.next_attempt_at > clock.now()
    assert _payment_status(env, out_trade_no) == DepositStatus.REFUNDING
    assert me(env, auth)["deposit"]["held_fen"] == 3000

    # Not due yet: the job leaves it.
    assert _run_retry_job(env, clock.now()) == 0
    assert env.standin.refunds == {}

    assert _run_retry_job(env, refund.next_attempt_at) == 1
    [at_wechat] = env.standin.refunds.values()
    assert at_wechat.out_refund_no == refund.out_refund_no
    _wait_refund_notification_acknowledged(env)

    [settled] = _refunds(env)
    assert (settled.status, settled.attempts, settled.last_error) == (
        RefundStatus.SUCCEEDED,
        2,
        None,
    )
    refund_calls = [
        status for (method, path, status) in env.standin.requests_seen if path.endswith("/refunds")
    ]
    assert refund_calls == [500, 200]
    assert env.standin.find_order(out_trade_no).refunded == 3000
    assert _refunded_entries(env) == [(EntryKind.DEPOSIT_REFUNDED, 3000, refund.out_refund_no)]
    assert me(env, auth)["deposit"]["held_fen"] == 0

    # Running the job again, later, moves nothing.
    assert _run_retry_job(env, clock.now() + timedelta(hours=2)) == 0
    assert len(env.standin.refunds) == 1
    assert len(_refunded_entries(env)) == 1


# -- notifications --------------------------------------------------------------------------


def test_refund_notification_replayed_ten_times_refunds_once(env: Env) -> None:
    auth, _, _ = _held_rider(env)
    assert _withdraw(env, auth).status_code == 202
    _wait_refund_notification_acknowledged(env)
    sent = last_notification(env, "REFUND.SUCCESS")

    for _ in range(10):
        replay = post_signed(
            env, REFUND_NOTIFY_PATH, sent.body, env.standin.sign_headers(sent.body)
        )
        assert replay.status_code == 204, replay.text

    assert len(_refunded_entries(env)) == 1
    assert len(_refund_notifications_queued(env)) == 1
    assert me(env, auth)["deposit"]["held_fen"] == 0
    assert [r.status for r in _refunds(env)] == [RefundStatus.SUCCEEDED]


def test_forged_stale_and_tampered_refund_notifications_are_refused_and_change_nothing(
    env: Env,
) -> None:
    env.standin.auto_complete_refunds = False
    auth, _, out_trade_no = _held_rider(env)
    out_refund_no = _withdraw(env, auth).json()["refunds"][0]["out_refund_no"]
    assert _wait_refund_requested(env).status == RefundStatus.PROCESSING
    resource = _refund_resource(env, out_refund_no)
    body = _refund_notification(env, resource)
    _assert_still_refunding(env, auth, out_trade_no)

    forged = post_signed(
        env, REFUND_NOTIFY_PATH, body, env.standin.sign_headers(body, private_key=FORGER_KEY)
    )
    assert (forged.status_code, forged.json()["code"]) == (401, "FAIL")
    assert "BadSignature" in forged.json()["message"]
    _assert_still_refunding(env, auth, out_trade_no)

    unknown = post_signed(
        env, REFUND_NOTIFY_PATH, body, env.standin.sign_headers(body, serial="0123ABCD")
    )
    assert (unknown.status_code, unknown.json()["code"]) == (401, "FAIL")
    _assert_still_refunding(env, auth, out_trade_no)

    headers = env.standin.sign_headers(body)
    clock.advance(timedelta(minutes=6))
    stale = post_signed(env, REFUND_NOTIFY_PATH, body, headers)
    assert (stale.status_code, stale.json()["code"]) == (401, "FAIL")
    assert "StaleTimestamp" in stale.json()["message"]
    clock.reset()
    _assert_still_refunding(env, auth, out_trade_no)

    envelope = json.loads(body)
    ct = envelope["resource"]["ciphertext"]
    envelope["resource"]["ciphertext"] = ct[:10] + ("A" if ct[10] != "A" else "B") + ct[11:]
    tampered = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    refused = post_signed(env, REFUND_NOTIFY_PATH, tampered, env.standin.sign_headers(tampered))
    assert (refused.status_code, refused.json()["code"]) == (400, "FAIL")
    assert "UndecryptableResource" in refused.json()["message"]
    _assert_still_refunding(env, auth, out_trade_no)

    unsigned = env.api.post(REFUND_NOTIFY_PATH, json={"out_refund_no": out_refund_no})
    assert (unsigned.status_code, unsigned.json()["code"]) == (400, "FAIL")
    _assert_still_refunding(env, auth, out_trade_no)

    # Genuinely signed, but not our refund as we made it: nothing is settled.
    for bad in (
        {"amount": {"total": 3000, "refund": 1}},
        {"mchid": "1900000999"},
        {"out_trade_no": "DEP_SOMEBODY_ELSE"},
        {"refund_status": "REFUNDED_TWICE"},
    ):
        b = _refund_notification(env, _refund_resource(env, out_refund_no, **bad))
        mismatch = post_signed(env, REFUND_NOTIFY_PATH, b, env.standin.sign_headers(b))
        assert (mismatch.status_code, mismatch.json()["code"]) == (400, "FAIL"), bad
        _assert_still_refunding(env, auth, out_trade_no)
    b = _refund_notification(env, {**resource, "out_refund_no": "RFNOPE1"})
    not_ours = post_signed(env, REFUND_NOTIFY_PATH, b, env.standin.sign_headers(b))
    assert (not_ours.status_code, not_ours.json()["code"]) == (404, "FAIL")
    _assert_still_refunding(env, auth, out_trade_no)

    # Control: the very same resource, genuinely signed and intact, is accepted.
    accepted = post_signed(env, REFUND_NOTIFY_PATH, body, env.standin.sign_headers(body))
    assert accepted.status_code == 204, accepted.text
    assert _refunded_entries(env) == [(EntryKind.DEPOSIT_REFUNDED, 3000, out_refund_no)]
    assert _payment_status(env, out_trade_no) == DepositStatus.REFUNDED


def test_refund_whose_notification_is_lost_is_settled_by_the_jobs_query(
    env_without_refund_notifications: Env,
) -> None:
    env = env_without_refund_notifications
    auth, _, out_trade_no = _held_rider(env)
    r = _withdraw(env, auth)
    assert r.status_code == 202, r.text
    _eventually(lambda: bool(notifications_of(env, "REFUND.SUCCESS")))
    sent = last_notification(env, "REFUND.SUCCESS")
    assert sent.finished.wait(10)
    assert not sent.acknowledged.is_set()
    assert all(isinstance(a, str) for a in sent.attempts)  # connection errors only
    assert me(env, auth)["deposit"]["held_fen"] == 3000

    # Processing for less than a minute: left for the notification.
    assert _run_retry_job(env, clock.now()) == 0
    assert [x.status for x in _refunds(env)] == [RefundStatus.PROCESSING]

    assert _run_retry_job(env, clock.now() + timedelta(minutes=2)) == 1
    [refund] = _refunds(env)
    assert refund.status == RefundStatus.SUCCEEDED
    assert _payment_status(env, out_trade_no) == DepositStatus.REFUNDED
    assert me(env, auth)["deposit"]["held_fen"] == 0
    assert _refunded_entries(env) == [(EntryKind.DEPOSIT_REFUNDED, 3000, refund.out_refund_no)]

    # The notification finally getting through afterwards moves nothing more.
    late = post_signed(env, REFUND_NOTIFY_PATH, sent.body, env.standin.sign_headers(sent.body))
    assert late.status_code == 204
    assert _run_retry_job(env, clock.now() + timedelta(hours=1)) == 0
    assert len(_refunded_entries(env)) == 1
    assert len(_refund_notifications_queued(env)) == 1


def test_abnormal_refund_moves_no_money_and_is_shown_to_operators(env: Env) -> None:
    env.standin.auto_complete_refunds = False
    auth, _, out_trade_no = _held_rider(env)
    out_refund_no = _withdraw(env, auth).json()["refunds"][0]["out_refund_no"]
    assert _wait_refund_requested(env).status == RefundStatus.PROCESSING

    b = _refund_notification(
        env, _refund_resource(env, out_refund_no, refund_status="ABNORMAL"), "REFUND.ABNORMAL"
    )
    assert post_signed(env, REFUND_NOTIFY_PATH, b, env.standin.sign_headers(b)).status_code == 204

    [refund] = _refunds(env)
    assert refund.status == RefundStatus.ABNORMAL
    assert _payment_status(env, out_trade_no) == DepositStatus.REFUNDING
    assert _refunded_entries(env) == []
    assert me(env, auth)["deposit"]["held_fen"] == 3000
    again = _withdraw(env, auth)
    assert (again.status_code, again.json()["state"]) == (200, "abnormal")
    assert len(env.standin.refunds) == 1
    listed = env.api.get("/api/v1/deposit-refunds", params={"status": "abnormal"})
    assert listed.status_code == 200, listed.text
    assert [(x["out_refund_no"], x["last_error"]) for x in listed.json()] == [
        (out_refund_no, "WeChat Pay refund status ABNORMAL")
    ]
    # The job does not touch it: an operator has to.
    assert _run_retry_job(env, clock.now() + timedelta(hours=1)) == 0
    assert [r.status for r in _refunds(env)] == [RefundStatus.ABNORMAL]
    assert notifications_of(env, "REFUND.SUCCESS") == []
