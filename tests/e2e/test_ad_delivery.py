"""Advertising delivery end to end (SPEC §4; firmware_protocol SPEC §4.5 Play, §7 replay):
an advertiser's booking is confirmed, the kiosks receive and acknowledge its playlist over
the broker, their screens report each play, one kiosk is offline for a while and replays
what it played meanwhile, a play re-sent under another seq is dropped, and the delivery
report, the settlement into credits and the monthly statement add up."""

from __future__ import annotations

import struct
import time
import zlib
from collections import Counter
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from firmware_protocol import encode, topic_for
from firmware_protocol.messages import Play, UplinkMessage
from server.billing.jobs import issue_monthly_statements
from server.core.clock import clock
from server.delivery import jobs as delivery_jobs
from server.delivery import rules as delivery_rules
from server.models import UplinkReceipt
from server.models.delivery import PlayRecord
from server.playlists.jobs import compile_and_push
from server.playlists.rules import parse_spot_code
from tests.accounts_env import make_advertiser
from tests.e2e.conftest import KioskImpostor, Stack
from tests.services import eventually

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: A 6-second loop of six 1-second spots: plays come every second.
LOOP = {"loop_seconds": 6, "spot_seconds": 1}
SPOTS_PER_LOOP = 3
#: A seq far above anything the simulated kiosk reaches in this test.
RESENT_SEQ = 0xFFFF_FF00


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


def ok(r: Any, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def plays_of(uplinks: list[UplinkMessage], booking_id: int) -> dict[str, Play]:
    """The booked plays (by play id hex) among a kiosk's uplinks."""
    out: dict[str, Play] = {}
    for m in uplinks:
        if isinstance(m, Play):
            ref = parse_spot_code(m.creative_id)
            if ref is not None and ref.booking_id == booking_id and not ref.make_good:
                out[m.play_id.hex()] = m
    return out


def resent(play: Play, seq: int) -> Play:
    return Play(
        play.kiosk_id,
        seq,
        play.ts_ms,
        play.play_id,
        play.creative_id,
        play.started_ms,
        play.duration_ms,
        play.playlist_version,
    )


def first_of_next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def test_a_confirmed_booking_is_played_replayed_after_an_outage_and_settled_and_billed(
    stack: Stack,
) -> None:
    assert stack.bridge is not None
    assert stack.bridge.dispatcher.service.on_play is not None, (
        "the bridge must record plays: KioskStateService(on_play=delivery.service.record_plays)"
        " in Dispatcher.from_settings"
    )
    api = stack.api
    cred_a, cred_b = stack.credentials[:2]
    a, b = cred_a.kiosk_id, cred_b.kiosk_id
    for k in (a, b):
        ok(api.patch(f"/api/v1/kiosks/{k}/ad-screen", json=LOOP))

    # An advertiser billed monthly, credited for lost spots; an approved creative.
    acme = make_advertiser(api, "Acme", billing_mode="monthly", lost_spot_policy="credit")
    media = ok(api.post("/api/v1/ads/media", content=png(), headers=acme.headers), 201)
    creative = ok(
        api.post(
            "/api/v1/ads/creatives",
            json={
                "kind": "image",
                "duration_ms": 1_000,
                "title": "雨天出行，就近还伞",
                "sha256": media["sha256"],
            },
            headers=acme.headers,
        ),
        201,
    )
    ok(api.post(f"/api/v1/ops/creatives/{creative['id']}/approve", json={"note": "fine"}))

    # Three spots of every loop on both kiosks, all of today and tomorrow (local time). An
    # hour that has begun is not sold any more: the kiosks' clocks run ahead into the next
    # hour below, so they play a sold hour now.
    now = clock.now()
    today = now.astimezone(SHANGHAI).date()
    tomorrow = today + timedelta(days=1)
    booking = ok(
        api.post(
            "/api/v1/ads/bookings",
            json={
                "name": "Rainy day",
                "spots_per_loop": SPOTS_PER_LOOP,
                "start_date": today.isoformat(),
                "end_date": tomorrow.isoformat(),
                "dayparts": "00-24",
                "selection": {"kiosk_ids": [a, b]},
                "creative_ids": [creative["id"]],
            },
            headers=acme.headers,
        ),
        201,
    )
    booking_id = booking["id"]
    booking = ok(api.post(f"/api/v1/ads/bookings/{booking_id}/confirm", headers=acme.headers))
    assert booking["status"] == "confirmed"
    prices = {k["kiosk_id"]: (k["price_fen"], k["days"]) for k in booking["kiosks"]}

    # The scheduler's job: compile both kiosks' playlists and publish them (retained).
    summary = compile_and_push(
        stack.db, stack.bridge.connection, clock.now(), settings=stack.settings, kiosk_ids=[a, b]
    )
    assert summary.published == 2, summary

    fleet = stack.start_fleet([cred_a, cred_b], screen=True, heartbeat_s=5)
    ka, kb = fleet.kiosk(a), fleet.kiosk(b)
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    ahead_ms = int((next_hour - now).total_seconds() * 1000) + 60_000
    for k in (ka, kb):
        k.set_faults(clock_skew_ms=ahead_ms)
    fleet.wait_all_online()

    def acknowledged() -> None:
        for k in (a, b):
            versions = ok(api.get(f"/api/v1/ops/kiosks/{k}/playlists"))["versions"]
            assert versions, f"{k} has no playlist"
            assert versions[0]["ack_result"] == "ok", f"{k} did not acknowledge its playlist"

    eventually(acknowledged)
    eventually(lambda: _at_least(plays_of(kb.uplinks(), booking_id), 4), timeout_s=30)

    # Kiosk B loses its link; its screen keeps playing and the plays wait in flash.
    kb.disconnect()
    kb.wait_offline()
    before_outage = set(plays_of(kb.uplinks(), booking_id))
    eventually(
        lambda: _at_least(
            {p: m for p, m in plays_of(kb.uplinks(), booking_id).items() if p not in before_outage},
            4,
        ),
        timeout_s=30,
    )
    assert kb.buffered >= 4

    # Meanwhile one of B's plays from before the outage is sent again under a new seq (a
    # kiosk that lost its ack state): the bridge takes the new seq, the play id is dropped.
    delivered = next(iter(plays_of(kb.uplinks(), booking_id)[p] for p in before_outage))
    impostor = KioskImpostor(stack.port, cred_b)
    try:
        assert impostor.connack() == 0
        again = resent(delivered, RESENT_SEQ)
        impostor.publish(topic_for(again), encode(again))
    finally:
        impostor.close()

    reconnected_at = clock.now()
    kb.reconnect()
    kb.wait_online()
    time.sleep(2)  # a few more live plays after the replay
    for k in (ka, kb):
        k.set_screen(False)
    time.sleep(1.5)  # the spot on screen finishes and is reported
    for k in (ka, kb):
        k.wait_drained(timeout=20)

    played = {k.kiosk_id: plays_of(k.uplinks(), booking_id) for k in (ka, kb)}
    every_play = {m.play_id.hex() for k in (ka, kb) for m in k.uplinks() if isinstance(m, Play)}

    def delivered_in_report() -> dict[str, Any]:
        report = ok(api.get(f"/api/v1/ads/bookings/{booking_id}/delivery", headers=acme.headers))
        per_kiosk: Counter[str] = Counter()
        for line in report["lines"]:
            per_kiosk[line["kiosk_id"]] += line["played"] + line["extra"]
        assert dict(per_kiosk) == {k: len(p) for k, p in played.items()}
        return report

    report = eventually(delivered_in_report)
    for line in report["lines"]:
        assert line["played"] + line["pending"] + line["lost"] == line["booked"], line
        assert not line["settled"]
    with stack.db.transaction() as s:
        stored = s.scalar(
            select(func.count()).select_from(PlayRecord).where(PlayRecord.kiosk_id.in_([a, b]))
        )
        stored_replays = s.scalar(
            select(func.count())
            .select_from(PlayRecord)
            .where(
                PlayRecord.kiosk_id == b,
                PlayRecord.booking_id == booking_id,
                PlayRecord.received_at >= reconnected_at,
                PlayRecord.started_at < reconnected_at,
            )
        )
        resent_receipt = s.get(UplinkReceipt, (b, RESENT_SEQ))
    assert stored == len(every_play), "each play id is stored once, house content included"
    assert resent_receipt is not None, "the re-sent play reached the bridge (and was dropped)"
    assert stored_replays is not None
    assert stored_replays >= 4, "B's plays while offline arrived after it reconnected"

    # The days are settled after their grace period: every booked spot is played or lost,
    # and the lost ones are credited (the contract says credit).
    last_end = datetime.combine(tomorrow + timedelta(days=1), dtime(0), tzinfo=SHANGHAI)
    grace = timedelta(seconds=stack.settings.ad_settlement_grace_s)
    with stack.db.transaction(immediate=True) as s:
        assert delivery_jobs.settle_delivery(s, last_end + grace, grace=grace) >= 2
    report = ok(api.get(f"/api/v1/ads/bookings/{booking_id}/delivery", headers=acme.headers))
    settled = [x for x in report["lines"] if x["settled"]]
    assert {x["kiosk_id"] for x in settled} == {a, b}
    assert {x["local_date"] for x in settled} <= {today.isoformat(), tomorrow.isoformat()}
    for line in settled:
        assert line["played"] + line["lost"] == line["booked"], line
        price_fen, days = prices[line["kiosk_id"]]
        expected = delivery_rules.credit_fen(price_fen, days, line["booked"], line["lost"])
        assert line["credited_fen"] == expected
    assert sum(x["played"] + x["extra"] for x in report["lines"]) == sum(map(len, played.values()))
    credited = report["totals"]["credited_fen"]
    assert credited > 0

    # The monthly statement (one per month the booking touches) bills the booking with the
    # credits applied.
    for month_end in sorted({first_of_next_month(today), first_of_next_month(tomorrow)}):
        with stack.db.transaction(immediate=True) as s:
            issued_at = datetime.combine(month_end, dtime(1), tzinfo=SHANGHAI)
            assert issue_monthly_statements(s, issued_at) == 1
    statements = ok(api.get("/api/v1/ads/invoices", headers=acme.headers))
    assert {x["kind"] for x in statements} == {"monthly_statement"}
    assert sum(x["subtotal_fen"] for x in statements) == booking["price_fen"]
    assert sum(x["credits_fen"] for x in statements) == credited
    for statement in statements:
        assert statement["total_fen"] == statement["subtotal_fen"] - statement["credits_fen"]
        detail = ok(api.get(f"/api/v1/ads/invoices/{statement['id']}", headers=acme.headers))
        assert sum(c["amount_fen"] for c in detail["credits"]) == statement["credits_fen"]
        assert sum(x["amount_fen"] for x in detail["lines"]) == statement["subtotal_fen"]


def _at_least(found: dict[str, Play], n: int) -> None:
    assert len(found) >= n, f"only {len(found)} booked plays so far"
