"""The notification sender against a real WeChat stand-in over HTTP, on both databases.

Nothing is monkeypatched: WeChat's refusals are the stand-in's (injected errcodes, expired
tokens, unknown templates, riders who turned messages off), the clock is moved instead of
sleeping, and the rider API is called over HTTP."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.app import create_app
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.models import Kiosk, Notification, NotificationStatus, Partner, Rider
from server.notifications import rules, templates
from server.notifications import service as notifications
from server.notifications.jobs import SendCounts, send_pending
from server.notifications.templates import TemplateSet
from server.payments import signing
from server.runtime import attach_wechat
from server.wechat.miniprogram import (
    MiniProgramClient,
    SubscribeMessage,
    TemplateDataInvalid,
    WeChatMisconfigured,
)
from server.wechat.standin import WeChatStandIn

KEY = signing.generate_private_key()
TEMPLATES = TemplateSet.from_settings(Settings())


@pytest.fixture
def client(mini_program: MiniProgramClient) -> MiniProgramClient:
    return mini_program


def add_rider(db: Database, openid: str) -> int:
    with db.transaction() as s:
        rider = Rider(openid=openid, created_at=clock.now())
        s.add(rider)
        s.flush()
        return rider.id


def refunded(db: Database, rider_id: int, subject: str, amount_fen: int = 3000) -> None:
    with db.transaction() as s:
        notifications.enqueue(
            s,
            rider_id,
            rules.DEPOSIT_REFUNDED,
            subject,
            {"amount_fen": amount_fen, "refunded_at": clock.now().isoformat()},
        )


def rows(db: Database) -> list[Notification]:
    with db.transaction() as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


def send(db: Database, client: MiniProgramClient, tpl: TemplateSet = TEMPLATES) -> SendCounts:
    return send_pending(db, client, tpl, clock.now(), limit=50)


def test_a_queued_notification_is_delivered_once(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    rider = add_rider(db, "oRiderOne")
    refunded(db, rider, "refund:R1")
    refunded(db, rider, "refund:R1")  # the same event queued twice is one notification

    counts = send(db, client)

    assert (counts.sent, counts.retry, counts.undeliverable) == (1, 0, 0)
    [message] = standin.sent_messages("oRiderOne")
    assert message.template_id == TEMPLATES.id_of(templates.DEPOSIT_CHANGED)
    assert message.data["thing1"] == "押金已退回"
    assert message.data["amount2"] == "30.00元"
    assert message.miniprogram_state == "formal"
    assert message.page == "pages/rentals/index"
    [row] = rows(db)
    assert row.status is NotificationStatus.SENT
    assert row.attempts == 1
    assert row.sent_at is not None
    assert row.last_error is None

    assert send(db, client).total == 0  # nothing left: never sent twice
    assert len(standin.sent_messages()) == 1
    over_http = httpx.get(
        f"{standin.url}/_standin/subscribe-messages", params={"openid": "oRiderOne"}
    ).json()
    assert [m["msgid"] for m in over_http] == [message.msgid]


def test_the_kiosk_is_named_in_the_message_not_its_id(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    now = clock.now()
    with db.transaction() as s:
        partner = Partner(name="West Lake Ops", region="Hangzhou", created_at=now)
        s.add(partner)
        s.flush()
        s.add(
            Kiosk(
                id="K000777",
                name="西湖文化广场地铁站B出口",
                partner_id=partner.id,
                lat=30.27,
                lon=120.16,
                address="Wulin",
                venue_type="1.101",
                mqtt_password_hash="$7$unused",
                created_at=now,
            )
        )
    rider = add_rider(db, "oKioskRider")
    with db.transaction() as s:
        notifications.enqueue(
            s,
            rider,
            rules.RENTAL_STARTED,
            "rental:7",
            {
                "rental_id": 7,
                "kiosk_id": "K000777",
                "started_at": now.isoformat(),
                "deadline_at": (now + timedelta(days=7)).isoformat(),
            },
        )

    assert send(db, client).sent == 1
    [message] = standin.sent_messages("oKioskRider")
    assert message.data["thing1"] == "西湖文化广场地铁站B出口"
    assert message.page == "pages/rentals/index?rental_id=7"


def test_an_expired_token_is_refreshed_and_the_message_sent_once(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    rider = add_rider(db, "oTokenRider")
    refunded(db, rider, "refund:A")
    refunded(db, rider, "refund:B")
    assert send(db, client).sent == 2
    assert standin.token_requests == [(False, 0)]  # one token for both sends

    standin.expire_access_tokens()  # WeChat expires it while our cache still trusts it
    refunded(db, rider, "refund:C")
    assert send(db, client).sent == 1

    assert [code for _, code in standin.subscribe_attempts] == [0, 0, 42001, 0]
    assert standin.token_requests == [(False, 0), (False, 0)]
    assert len(standin.sent_messages("oTokenRider")) == 3
    assert {r.status for r in rows(db)} == {NotificationStatus.SENT}


def test_the_token_is_renewed_before_it_expires_without_a_refusal(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    rider = add_rider(db, "oRenewRider")
    refunded(db, rider, "refund:A")
    assert send(db, client).sent == 1

    clock.advance(timedelta(seconds=7200 - 60))  # inside the last minutes of its lifetime
    refunded(db, rider, "refund:B")
    assert send(db, client).sent == 1

    assert len(standin.token_requests) == 2
    assert [code for _, code in standin.subscribe_attempts] == [0, 0]


def test_a_token_refused_twice_is_retried_later(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    rider = add_rider(db, "oTwiceRider")
    refunded(db, rider, "refund:A")
    standin.fail_next_subscribe(40001, 40001)

    counts = send(db, client)

    assert counts.retry == 1
    [row] = rows(db)
    assert row.status is NotificationStatus.PENDING
    assert "40001" in (row.last_error or "")
    clock.advance(timedelta(seconds=16))
    assert send(db, client).sent == 1
    assert len(standin.sent_messages()) == 1


def test_a_rider_who_refused_the_messages_is_undeliverable_and_never_retried(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    rider = add_rider(db, "oRefuser")
    standin.refuse_subscribe("oRefuser")
    refunded(db, rider, "refund:A")

    counts = send(db, client)

    assert counts.undeliverable == 1
    [row] = rows(db)
    assert row.status is NotificationStatus.UNDELIVERABLE
    assert "43101" in (row.last_error or "")
    assert row.sent_at is None
    attempts = len(standin.subscribe_attempts)
    clock.advance(timedelta(days=1))
    assert send(db, client).total == 0
    assert len(standin.subscribe_attempts) == attempts
    assert standin.sent_messages() == []


@pytest.mark.parametrize(
    ("errcode", "why"),
    [(43101, "refuse"), (47003, "argument invalid"), (40037, "template"), (40003, "openid")],
)
def test_each_permanent_wechat_refusal_makes_the_notification_undeliverable(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient, errcode: int, why: str
) -> None:
    rider = add_rider(db, "oPermanent")
    refunded(db, rider, "refund:A")
    standin.fail_next_subscribe(errcode)

    assert send(db, client).undeliverable == 1
    [row] = rows(db)
    assert row.status is NotificationStatus.UNDELIVERABLE
    assert str(errcode) in (row.last_error or "")
    assert why in (row.last_error or "")


@pytest.mark.parametrize("errcode", [-1, 45009])
def test_a_busy_or_rate_limited_wechat_is_retried_later_and_delivered_once(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient, errcode: int
) -> None:
    rider = add_rider(db, "oBusyRider")
    refunded(db, rider, "refund:A")
    standin.fail_next_subscribe(errcode)
    start = clock.now()

    counts = send(db, client)

    assert counts.retry == 1
    [row] = rows(db)
    assert row.status is NotificationStatus.PENDING
    assert row.attempts == 1
    assert str(errcode) in (row.last_error or "")
    assert row.next_attempt_at >= start + rules.retry_delay(1)
    assert send(db, client).total == 0  # not due yet: no second attempt right away

    clock.advance(rules.retry_delay(1) + timedelta(seconds=1))
    assert send(db, client).sent == 1
    assert send(db, client).total == 0
    [row] = rows(db)
    assert row.status is NotificationStatus.SENT
    assert row.attempts == 2
    assert len(standin.sent_messages("oBusyRider")) == 1


def test_a_notification_failing_for_a_day_is_given_up(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    rider = add_rider(db, "oGiveUp")
    refunded(db, rider, "refund:A")
    standin.fail_next_subscribe(*([-1] * 100))
    for _ in range(10):
        if send(db, client).undeliverable:
            break
        clock.advance(timedelta(hours=5))
    [row] = rows(db)
    assert row.status is NotificationStatus.UNDELIVERABLE
    assert "gave up" in (row.last_error or "")
    assert row.created_at + rules.GIVE_UP_AFTER <= clock.now()
    assert row.attempts == 6  # at 0, 5, 10, 15 and 20 hours, and the last at 25
    assert standin.sent_messages() == []


def test_a_misconfigured_app_secret_keeps_notifications_pending(
    db: Database, standin: WeChatStandIn
) -> None:
    rider = add_rider(db, "oPatient")
    refunded(db, rider, "refund:A")
    with MiniProgramClient(standin.appid, "wrong-secret", base_url=standin.url) as wrong:
        assert send(db, wrong).retry == 1
    [row] = rows(db)
    assert row.status is NotificationStatus.PENDING
    assert "40125" in (row.last_error or "")

    clock.advance(timedelta(seconds=16))
    with MiniProgramClient(standin.appid, standin.secret, base_url=standin.url) as right:
        assert send(db, right).sent == 1


def test_an_unknown_template_id_is_refused_by_wechat_and_not_retried(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    rider = add_rider(db, "oNoTemplate")
    refunded(db, rider, "refund:A")
    wrong = TemplateSet(ids={**TEMPLATES.ids, "wechat_tpl_deposit_changed": "tplTypo"})

    assert send(db, client, wrong).undeliverable == 1
    [row] = rows(db)
    assert "40037" in (row.last_error or "")
    assert standin.subscribe_attempts == [("oNoTemplate", 40037)]


def test_a_reminder_past_its_deadline_or_a_bad_payload_is_not_sent(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    rider = add_rider(db, "oStale")
    now = clock.now()
    with db.transaction() as s:
        notifications.enqueue(
            s,
            rider,
            rules.DEADLINE_DAY6,
            "rental:9",
            {"rental_id": 9, "deadline_at": (now + timedelta(hours=1)).isoformat()},
        )
        notifications.enqueue(s, rider, rules.DEPOSIT_REFUNDED, "refund:X", {"no": "amount"})
    clock.advance(timedelta(hours=2))  # the sender was down past the deadline

    assert send(db, client).undeliverable == 2
    stale, bad = rows(db)
    assert "deadline" in (stale.last_error or "")
    assert "amount_fen" in (bad.last_error or "")
    assert standin.subscribe_attempts == []


def test_the_stand_in_holds_values_to_wechats_rules(
    standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    message = SubscribeMessage(
        touser="oDirect",
        template_id=TEMPLATES.id_of(templates.RENTAL_ENDED),
        data={"thing1": "x" * 21, "time2": "2026-11-26 14:05"},
    )
    with pytest.raises(TemplateDataInvalid, match="thing1") as err:
        client.send_subscribe_message(message)
    assert err.value.permanent
    ok = SubscribeMessage(
        touser="oDirect",
        template_id=message.template_id,
        data={"thing1": "x" * 20, "time2": "2026-11-26 14:05"},
    )
    assert client.send_subscribe_message(ok) == standin.sent_messages("oDirect")[0].msgid
    with (
        MiniProgramClient("wx0000", standin.secret, base_url=standin.url) as c,
        pytest.raises(WeChatMisconfigured),
    ):
        c.access_token()


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_two_senders_at_once_deliver_each_notification_once(
    db: Database, standin: WeChatStandIn
) -> None:
    riders = [add_rider(db, f"oConcurrent{i}") for i in range(5)]
    with db.transaction() as s:
        for n in range(40):
            notifications.enqueue(
                s,
                riders[n % 5],
                rules.DEPOSIT_FORFEITED,
                f"rental:{n}",
                {"rental_id": n, "amount_fen": 3000},
            )
    standin.subscribe_latency_s = 0.02  # each send holds its row lock a while
    start = threading.Barrier(2)
    results: dict[str, SendCounts] = {}
    errors: list[BaseException] = []

    def sender(name: str) -> None:
        try:
            with MiniProgramClient(standin.appid, standin.secret, base_url=standin.url) as c:
                start.wait(timeout=10)
                results[name] = send(db, c)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert results["a"].sent + results["b"].sent == 40
    assert results["a"].sent > 0
    assert results["b"].sent > 0  # both really worked the outbox at the same time
    pages = sorted(m.page or "" for m in standin.sent_messages())
    assert pages == sorted(f"pages/rentals/index?rental_id={n}" for n in range(40))
    assert {r.status for r in rows(db)} == {NotificationStatus.SENT}
    assert all(r.attempts == 1 for r in rows(db))


def test_the_api_lists_the_riders_own_notifications_newest_first(
    db: Database, standin: WeChatStandIn, client: MiniProgramClient, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, wechat_appid=standin.appid)
    app = create_app(settings, db=db, hooks=[attach_wechat(client, None)])
    with TestClient(app) as api:

        def login(openid: str) -> dict[str, str]:
            code = standin.issue_login_code(openid)
            token = api.post("/api/v1/riders/login", json={"code": code}).json()["token"]
            return {"Authorization": f"Bearer {token}"}

        alice, bob = login("oAlice"), login("oBob")
        with db.transaction() as s:
            ids = {openid: id_ for openid, id_ in s.execute(select(Rider.openid, Rider.id))}
        refunded(db, ids["oAlice"], "refund:A1", amount_fen=3000)
        assert send(db, client).sent == 1
        clock.advance(timedelta(minutes=5))
        with db.transaction() as s:
            notifications.enqueue(
                s,
                ids["oAlice"],
                rules.DEADLINE_DAY5,
                "rental:1",
                {"rental_id": 1, "deadline_at": (clock.now() + timedelta(days=2)).isoformat()},
            )
        refunded(db, ids["oBob"], "refund:B1", amount_fen=2000)

        mine = api.get("/api/v1/riders/me/notifications", headers=alice)
        theirs = api.get("/api/v1/riders/me/notifications", headers=bob)
        nobody = api.get("/api/v1/riders/me/notifications")
        paged = api.get("/api/v1/riders/me/notifications?limit=1&offset=1", headers=alice)

    assert mine.status_code == 200
    body = mine.json()
    assert body["total"] == 2
    assert [n["kind"] for n in body["items"]] == [rules.DEADLINE_DAY5, rules.DEPOSIT_REFUNDED]
    newest, oldest = body["items"]
    assert newest["status"] == "pending"
    assert newest["sent_at"] is None
    assert newest["payload"]["rental_id"] == 1
    assert oldest["status"] == "sent"
    assert oldest["sent_at"] is not None
    assert oldest["payload"]["amount_fen"] == 3000
    assert set(newest) == {"id", "kind", "payload", "status", "created_at", "sent_at"}

    assert theirs.status_code == 200
    assert [n["payload"]["amount_fen"] for n in theirs.json()["items"]] == [2000]
    assert nobody.status_code == 401
    assert [n["kind"] for n in paged.json()["items"]] == [rules.DEPOSIT_REFUNDED]
