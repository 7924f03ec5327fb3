"""Compiling playlists against SQLite and PostgreSQL, pushing them through the real Mosquitto,
and the kiosks' answers through the bridge's dispatch path (injected, no broker)."""

from __future__ import annotations

import hashlib
import queue
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import delete, select

from firmware_protocol import decode_downlink, topics
from firmware_protocol.messages import (
    CmdResult,
    CmdStatus,
    Heartbeat,
    MsgType,
    Playlist,
    SlotState,
)
from server.app import create_app
from server.bridge.connection import BridgeConnection
from server.bridge.dispatch import Dispatcher, inject
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import MemorySharedState
from server.models import (
    Advertiser,
    BillingMode,
    Booking,
    BookingCreative,
    BookingKiosk,
    BookingStatus,
    Creative,
    CreativeKind,
    CreativeStatus,
    KioskState,
    LostSpotPolicy,
    PlaylistVersion,
    Reservation,
)
from server.models.delivery import MakeGood
from server.playlists import jobs, rules, service
from server.playlists import repository as repo
from tests.accounts_env import make_advertiser
from tests.integration.rows import add_kiosks
from tests.services import MOSQUITTO_HOST, require

PORT = 1883
SETTINGS = Settings(media_base_url="http://media.test")
EMPTY_SLOTS = tuple(SlotState() for _ in range(22))


@pytest.fixture(autouse=True)
def _early_in_the_hour() -> None:
    """Tests move the clock by minutes; starting at hh:05 keeps them inside one hour, where
    an unchanged compile must give an unchanged playlist (a new hour starts a new window)."""
    now = clock.now()
    clock.advance(now.replace(minute=5, second=0, microsecond=0) - now)


@dataclass
class Booked:
    booking_id: int
    advertiser_id: int
    creative_id: int


def now_hour() -> datetime:
    return clock.now().replace(minute=0, second=0, microsecond=0)


def book(
    db: Database,
    kiosk_ids: list[str],
    *,
    hours: int = 6,
    spots: int = 2,
    creative_status: CreativeStatus = CreativeStatus.APPROVED,
    name: str = "Acme",
) -> Booked:
    """A confirmed booking of `spots` per loop on the kiosks for the next `hours` hours
    (Shanghai has no DST: UTC hour starts are local hour starts)."""
    now = clock.now()
    with db.transaction() as s:
        adv = Advertiser(
            name=f"{name}-{uuid.uuid4().hex[:6]}",
            billing_mode=BillingMode.PREPAID,
            lost_spot_policy=LostSpotPolicy.MAKE_GOOD,
            created_at=now,
        )
        s.add(adv)
        s.flush()
        creative = Creative(
            advertiser_id=adv.id,
            title="雨天出行，就近还伞",
            body_text="",
            declared_text="",
            kind=CreativeKind.IMAGE,
            duration_ms=10_000,
            media_url=f"http://media.test/api/v1/media/{'ab' * 32}",
            sha256="ab" * 32,
            status=creative_status,
            created_at=now,
            updated_at=now,
        )
        booking = Booking(
            advertiser_id=adv.id,
            name="Winter rain",
            status=BookingStatus.CONFIRMED,
            spots_per_loop=spots,
            start_date=now.date(),
            end_date=(now + timedelta(days=1)).date(),
            dayparts="00-24",
            selection="{}",
            price_fen=1000,
            confirmed_at=now,
            revision=1,
            created_at=now,
            updated_at=now,
        )
        s.add_all([creative, booking])
        s.flush()
        s.add(BookingCreative(booking_id=booking.id, creative_id=creative.id))
        for k in kiosk_ids:
            s.add(BookingKiosk(booking_id=booking.id, kiosk_id=k, days=2, price_fen=500))
            for h in range(hours):
                s.add(
                    Reservation(
                        booking_id=booking.id,
                        kiosk_id=k,
                        starts_at=now_hour() + timedelta(hours=h),
                        spots=spots,
                    )
                )
        return Booked(booking.id, adv.id, creative.id)


def versions(db: Database, kiosk_id: str) -> list[PlaylistVersion]:
    with db.transaction() as s:
        return list(
            s.scalars(
                select(PlaylistVersion)
                .where(PlaylistVersion.kiosk_id == kiosk_id)
                .order_by(PlaylistVersion.version)
            )
        )


def codes_now(version: PlaylistVersion) -> set[str]:
    stored = rules.from_body(version.body)
    block = next(b for b in stored.blocks if b.start <= clock.now() < b.end)
    return {s.code for s in block.spots}


def touch_booking(db: Database, booking_id: int, **changes: object) -> None:
    """What the bookings and creatives domains do on every change: bump the revision."""
    clock.advance(timedelta(seconds=90))  # later than the compile, beyond CHANGE_SLACK
    with db.transaction() as s:
        b = s.get(Booking, booking_id)
        assert b is not None
        for k, v in changes.items():
            setattr(b, k, v)
        b.revision += 1
        b.updated_at = clock.now()


# ------------------------------------------------------------------ compiling


def test_every_kiosk_gets_a_first_version_covering_the_next_48_hours(db: Database) -> None:
    add_kiosks(db, "KP1", "KP2")
    booked = book(db, ["KP1"])

    summary = jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)

    assert (summary.due, summary.new_versions, summary.failed) == (2, 2, [])
    (v1,) = versions(db, "KP1")
    assert v1.version == 1
    assert v1.ends_at - clock.now() >= timedelta(hours=48)
    assert v1.published_at is None  # nobody to publish to
    assert f"b{booked.booking_id}-c{booked.creative_id}" in codes_now(v1)
    (other,) = versions(db, "KP2")
    assert {c.split("-")[0] for c in codes_now(other)} == {"house"}


def test_an_unchanged_compile_makes_no_new_version(db: Database) -> None:
    add_kiosks(db, "KP1")
    book(db, ["KP1"])
    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)
    # Just after a booking change the kiosk is compiled again for a minute (CHANGE_SLACK).
    recheck = jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)
    clock.advance(2 * jobs.CHANGE_SLACK)

    again = jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS, kiosk_ids=["KP1"])
    due = jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)

    assert (recheck.due, recheck.new_versions, recheck.unchanged) == (1, 0, 1)
    assert (again.new_versions, again.unchanged) == (0, 1)
    assert due.due == 0  # covered for 72 h, nothing changed since: not even looked at
    assert [v.version for v in versions(db, "KP1")] == [1]


def test_a_booking_change_makes_a_new_version_for_its_kiosks_only(db: Database) -> None:
    add_kiosks(db, "KP1", "KP2", "KP3")
    booked = book(db, ["KP1", "KP2"])
    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)

    touch_booking(db, booked.booking_id, status=BookingStatus.RELEASED)
    with db.transaction() as s:
        s.execute(delete(Reservation).where(Reservation.booking_id == booked.booking_id))
    summary = jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)

    assert (summary.due, summary.new_versions) == (2, 2)
    assert [v.version for v in versions(db, "KP1")] == [1, 2]
    assert [v.version for v in versions(db, "KP2")] == [1, 2]
    assert [v.version for v in versions(db, "KP3")] == [1]
    assert {c.split("-")[0] for c in codes_now(versions(db, "KP1")[-1])} == {"house"}


def test_an_approval_turns_house_content_into_the_booked_creative(db: Database) -> None:
    add_kiosks(db, "KP1")
    booked = book(db, ["KP1"], creative_status=CreativeStatus.PENDING)
    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)
    with db.transaction() as s:
        before = service.playing(s, "KP1", clock.now())
    held = [
        s
        for b in rules.from_body(versions(db, "KP1")[0].body).blocks
        for s in b.spots
        if s.booking_id == booked.booking_id
    ]

    with db.transaction() as s:
        c = s.get(Creative, booked.creative_id)
        assert c is not None
        c.status = CreativeStatus.APPROVED
    touch_booking(db, booked.booking_id)
    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)

    assert held
    assert all(s.note == rules.NOT_APPROVED and s.rule == rules.HOUSE for s in held)
    assert before.version is not None
    assert before.version.version == 1
    assert before.screen is not None
    assert before.screen.spot.rule == rules.HOUSE
    latest = versions(db, "KP1")[-1]
    assert latest.version == 2
    assert f"b{booked.booking_id}-c{booked.creative_id}" in codes_now(latest)


def test_held_bookings_do_not_play_until_confirmed(db: Database) -> None:
    add_kiosks(db, "KP1")
    booked = book(db, ["KP1"])
    with db.transaction() as s:
        b = s.get(Booking, booked.booking_id)
        assert b is not None
        b.status = BookingStatus.HELD

    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)

    assert {c.split("-")[0] for c in codes_now(versions(db, "KP1")[0])} == {"house"}


def test_a_version_another_scheduler_inserted_first_is_skipped_not_raised(db: Database) -> None:
    add_kiosks(db, "KP1")
    now = clock.now()
    row = {
        "kiosk_id": "KP1",
        "version": 1,
        "starts_at": now,
        "ends_at": now + timedelta(hours=72),
        "content_hash": "0" * 64,
        "body": "{}",
        "spot_count": 0,
        "compiled_at": now,
        "published_at": None,
        "acked_at": None,
        "ack_result": None,
    }
    with db.transaction() as s:
        assert repo.insert_versions(s, [{**row, "cmd_id": "a"}]) == {("KP1", 1)}
    with db.transaction() as s:
        assert repo.insert_versions(s, [{**row, "cmd_id": "b"}]) == set()
    assert [v.cmd_id for v in versions(db, "KP1")] == ["a"]


# ------------------------------------------------------------------ acknowledgement


def test_the_kiosks_answer_through_the_bridge_marks_the_version_acknowledged(
    db: Database,
) -> None:
    add_kiosks(db, "KP1", "KP2")
    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)
    (v1,) = versions(db, "KP1")
    (other,) = versions(db, "KP2")
    dispatcher = Dispatcher(db, MemorySharedState())  # the default service, as the bridge

    report = inject(
        dispatcher,
        CmdResult("KP1", 1, clock.now_ms(), v1.cmd_id, CmdStatus.OK),
        Heartbeat("KP1", 2, clock.now_ms(), -70, EMPTY_SLOTS, playlist_version=1),
        # Another kiosk cannot acknowledge for it, and a repeat keeps the first answer.
        CmdResult("KP2", 1, clock.now_ms(), v1.cmd_id, CmdStatus.REJECTED),
        CmdResult("KP2", 2, clock.now_ms(), other.cmd_id, CmdStatus.REJECTED),
    )

    assert report.applied == 4
    (acked,) = versions(db, "KP1")
    assert acked.acked_at is not None
    assert acked.ack_result == "ok"
    assert versions(db, "KP2")[0].ack_result == "rejected"
    with db.transaction() as s:
        state = s.get(KioskState, "KP1")
        assert state is not None
        assert state.playlist_version == 1
        listed = service.list_versions(s, "KP1")
    assert listed.reported_version == 1
    assert [v.acked_at for v in listed.versions] == [acked.acked_at]


# ------------------------------------------------------------------ through Mosquitto


class KioskSubscriber:
    """A plain paho client standing in for a kiosk's downlink subscription."""

    def __init__(self, kiosk_id: str) -> None:
        self.kiosk_id = kiosk_id
        self.received: queue.Queue[Playlist] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{kiosk_id}")
        self.client.on_connect = lambda c, *_: c.subscribe(topics.downlink_filter(kiosk_id), 1)
        self.client.on_message = self._on_message
        self.client.connect(MOSQUITTO_HOST, PORT)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            got = decode_downlink(msg.topic, bytes(msg.payload))
            assert isinstance(got, Playlist)
            self.received.put(got)

    def next(self) -> Playlist:
        return self.received.get(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher() -> Iterator[BridgeConnection]:
    require("Mosquitto", MOSQUITTO_HOST, PORT)
    settings = Settings(mqtt_host=MOSQUITTO_HOST, mqtt_port=PORT, embedded_broker=False)
    conn = BridgeConnection(settings, client_id=f"sched-{uuid.uuid4().hex[:8]}", subscribe=False)
    conn.start()
    assert conn.wait_ready(10)
    yield conn
    conn.stop()


def clear_retained(conn: BridgeConnection, kiosk_id: str) -> None:
    conn.publish_and_wait(topics.downlink(kiosk_id, MsgType.PLAYLIST), b"", qos=1, retain=True)


def test_playlists_are_pushed_retained_and_reach_a_kiosk_that_connects_later(
    db: Database, publisher: BridgeConnection
) -> None:
    kiosk_id = f"KP{uuid.uuid4().hex[:8]}"
    add_kiosks(db, kiosk_id)
    booked = book(db, [kiosk_id])
    try:
        summary = jobs.compile_and_push(db, publisher, clock.now(), settings=SETTINGS)
        # The kiosk was away during the push: the broker keeps the playlist for it.
        kiosk = KioskSubscriber(kiosk_id)
        try:
            got = kiosk.next()
        finally:
            kiosk.close()
    finally:
        clear_retained(publisher, kiosk_id)

    assert (summary.new_versions, summary.published, summary.publish_failed) == (1, 1, 0)
    (v1,) = versions(db, kiosk_id)
    assert v1.published_at is not None
    assert (got.version, got.cmd_id) == (1, v1.cmd_id)
    stored = rules.from_body(v1.body)
    assert got == rules.to_message(kiosk_id, stored.blocks, stored.spot_ms, 1, v1.cmd_id, got.ts_ms)
    now_ms = clock.now_ms()
    block = next(b for b in got.blocks if b.start_ms <= now_ms < b.end_ms)
    assert f"b{booked.booking_id}-c{booked.creative_id}" in {s.creative_id for s in block.spots}
    assert all(s.media_url.startswith("http://media.test/") for s in block.spots)


def test_a_failed_publish_is_retried_on_the_next_run(
    db: Database, publisher: BridgeConnection
) -> None:
    kiosk_id = f"KP{uuid.uuid4().hex[:8]}"
    add_kiosks(db, kiosk_id)
    down = BridgeConnection(
        SETTINGS, client_id=f"never-{kiosk_id}", subscribe=False
    )  # never connected
    try:
        first = jobs.compile_and_push(db, down, clock.now(), settings=SETTINGS)
        unpublished = versions(db, kiosk_id)[0].published_at
        second = jobs.compile_and_push(db, publisher, clock.now(), settings=SETTINGS)
        kiosk = KioskSubscriber(kiosk_id)
        try:
            got = kiosk.next()
        finally:
            kiosk.close()
    finally:
        clear_retained(publisher, kiosk_id)

    assert (first.new_versions, first.published, first.publish_failed) == (1, 0, 1)
    assert unpublished is None
    assert (second.due, second.new_versions, second.published) == (0, 0, 1)
    assert versions(db, kiosk_id)[0].published_at is not None
    assert got.version == 1


def test_an_unacknowledged_playlist_is_published_again_after_a_while(
    db: Database, publisher: BridgeConnection
) -> None:
    kiosk_id = f"KP{uuid.uuid4().hex[:8]}"
    add_kiosks(db, kiosk_id)
    try:
        jobs.compile_and_push(db, publisher, clock.now(), settings=SETTINGS)
        soon = jobs.compile_and_push(db, publisher, clock.now(), settings=SETTINGS)
        clock.advance(timedelta(seconds=SETTINGS.playlist_republish_s + 1))
        later = jobs.compile_and_push(db, publisher, clock.now(), settings=SETTINGS)
    finally:
        clear_retained(publisher, kiosk_id)

    assert (soon.published, later.published) == (0, 1)
    assert [v.version for v in versions(db, kiosk_id)] == [1]


def test_old_versions_are_pruned_but_each_kiosks_latest_is_kept(db: Database) -> None:
    add_kiosks(db, "KP1", "KP2")
    booked = book(db, ["KP1"])
    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)
    touch_booking(db, booked.booking_id, status=BookingStatus.RELEASED)
    with db.transaction() as s:
        s.execute(delete(Reservation).where(Reservation.booking_id == booked.booking_id))
    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)

    with db.transaction() as s:
        pruned = jobs.prune_versions(s, clock.now() + timedelta(days=30))

    assert pruned == 1
    assert [v.version for v in versions(db, "KP1")] == [2]
    assert [v.version for v in versions(db, "KP2")] == [1]


# ------------------------------------------------------------------ operators' endpoints

OPERATOR = {"Authorization": "Bearer op-secret"}


@pytest.fixture
def client(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, operator_token="op-secret")
    with TestClient(create_app(settings, db=db)) as c:
        yield c


def test_operators_see_versions_and_why_a_kiosk_plays_a_spot(
    db: Database, client: TestClient
) -> None:
    add_kiosks(db, "KP1")
    booked = book(db, ["KP1"])
    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)
    (v1,) = versions(db, "KP1")
    stored = rules.from_body(v1.body)
    block = next(b for b in stored.blocks if b.start <= clock.now() < b.end)
    index = next(i for i, s in enumerate(block.spots) if s.rule == rules.BOOKED)
    at = block.start + timedelta(seconds=10 * index + 4)  # 10-s spots from the block start

    listed = client.get("/api/v1/ops/kiosks/KP1/playlists", headers=OPERATOR)
    why = client.get(
        "/api/v1/ops/kiosks/KP1/playing", params={"at": at.isoformat()}, headers=OPERATOR
    )

    assert listed.status_code == 200, listed.text
    assert [v["version"] for v in listed.json()["versions"]] == [1]
    assert listed.json()["reported_version"] is None
    assert why.status_code == 200, why.text
    body = why.json()
    assert (body["version"], body["source"]) == (1, "latest")  # sent, not answered yet
    assert body["spot"] | {"starts_at": "-", "ends_at": "-", "media_url": "-"} == {
        "code": f"b{booked.booking_id}-c{booked.creative_id}",
        "rule": "booked",
        "index": index,
        "starts_at": "-",
        "ends_at": "-",
        "media_url": "-",
        "sha256": "ab" * 32,
        "creative_id": booked.creative_id,
        "creative_title": "雨天出行，就近还伞",
        "creative_status": "approved",
        "booking_id": booked.booking_id,
        "booking_name": "Winter rain",
        "booking_status": "confirmed",
        "advertiser_id": booked.advertiser_id,
        "advertiser_name": body["spot"]["advertiser_name"],
        "daypart": "00-24",
        "note": None,
    }
    assert body["spot"]["advertiser_name"].startswith("Acme-")
    assert datetime.fromisoformat(body["spot"]["starts_at"]) == at - timedelta(seconds=4)
    assert "bought this spot in daypart 00-24" in body["explanation"]


def test_the_playlist_endpoints_refuse_strangers_unknown_kiosks_and_naive_times(
    db: Database, client: TestClient
) -> None:
    add_kiosks(db, "KP1")
    adv = make_advertiser(client, "Acme", operator_headers=OPERATOR)

    unknown = client.get("/api/v1/ops/kiosks/NOPE/playing", headers=OPERATOR)
    unknown_list = client.get("/api/v1/ops/kiosks/NOPE/playlists", headers=OPERATOR)
    advertiser = client.get("/api/v1/ops/kiosks/KP1/playlists", headers=adv.headers)
    anonymous = client.get("/api/v1/ops/kiosks/KP1/playing")
    naive = client.get(
        "/api/v1/ops/kiosks/KP1/playing", params={"at": "2026-11-26T08:00:00"}, headers=OPERATOR
    )
    idle = client.get("/api/v1/ops/kiosks/KP1/playing", headers=OPERATOR)

    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_kiosk")
    assert (unknown_list.status_code, unknown_list.json()["error"]) == (404, "unknown_kiosk")
    assert advertiser.status_code == 403
    assert anonymous.status_code == 401
    assert (naive.status_code, naive.json()["error"]) == (400, "naive_datetime")
    assert idle.status_code == 200
    assert (idle.json()["version"], idle.json()["spot"]) == (None, None)
    assert "no playlist" in idle.json()["explanation"]


def test_kiosks_download_house_content_that_matches_its_checksum(client: TestClient) -> None:
    (item, *_) = service.house_items("http://testserver")

    r = client.get(item.media.url.removeprefix("http://testserver"))
    missing = client.get("/api/v1/house/..%2Fservice.py")

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert hashlib.sha256(r.content).hexdigest() == item.media.sha256
    assert missing.status_code == 404


def test_a_fleet_wide_compile_spreads_over_runs_most_urgent_first(db: Database) -> None:
    add_kiosks(db, "KP1", "KP2", "KP3")
    capped = SETTINGS.model_copy(update={"playlist_max_per_run": 2})
    first = jobs.compile_and_push(db, None, clock.now(), settings=capped)
    second = jobs.compile_and_push(db, None, clock.now(), settings=capped)
    # A day later every window runs short, and a booking changes on the last kiosk.
    clock.advance(timedelta(hours=20))
    booked = book(db, ["KP3"])
    touch_booking(db, booked.booking_id)
    third = jobs.compile_and_push(db, None, clock.now(), settings=capped)

    assert (first.due, first.deferred, first.new_versions) == (3, 1, 2)
    assert (second.due, second.deferred, second.new_versions) == (1, 0, 1)
    assert (third.due, third.deferred, third.new_versions) == (3, 1, 2)
    assert [v.version for v in versions(db, "KP3")] == [1, 2]  # the changed booking first


def test_a_make_good_owed_is_scheduled_in_unsold_spots_of_that_kiosk(db: Database) -> None:
    add_kiosks(db, "KP1", "KP2")
    booked = book(db, ["KP1", "KP2"], spots=2)
    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)
    clock.advance(2 * jobs.CHANGE_SLACK)
    jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)  # settled: nothing due
    clock.advance(timedelta(seconds=20))
    with db.transaction() as s:
        s.add(
            MakeGood(
                booking_id=booked.booking_id,
                kiosk_id="KP1",
                local_date=clock.now().date(),
                spots_owed=100,
                created_at=clock.now(),
            )
        )

    summary = jobs.compile_and_push(db, None, clock.now(), settings=SETTINGS)

    assert (summary.due, summary.new_versions) == (1, 1)
    latest = versions(db, "KP1")[-1]
    blocks = [b for b in rules.from_body(latest.body).blocks if b.end > clock.now()]
    mg = f"b{booked.booking_id}-c{booked.creative_id}-mg"
    # 100 plays owed = 2 spot positions for an hour (60 loops each); the advertiser already
    # holds 2 of 6, and never gets more than half the loop: one this hour, one the next
    # (the two identical hours make one block).
    assert blocks[0].end - blocks[0].start == timedelta(hours=2)
    loop = blocks[0].spots[:6]
    assert Counter(s.rule for s in loop) == {"booked": 2, "make_good": 1, "house": 3}
    assert {s.code for s in loop if s.rule == rules.MAKE_GOOD} == {mg}
    assert all(s.rule != rules.MAKE_GOOD for b in blocks[1:] for s in b.spots)
    assert [v.version for v in versions(db, "KP2")] == [1]
