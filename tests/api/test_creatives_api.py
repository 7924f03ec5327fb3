"""Creatives over HTTP (SPEC §4 Creatives), on SQLite and PostgreSQL: media upload, the
automatic price check, operator review, tenant isolation, and the bookings contract."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.app import create_app
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.creatives import jobs
from server.creatives.media import MediaStore
from server.models import AuditLog, Booking, BookingCreative, BookingStatus, Creative
from tests.accounts_env import Account, log_in, make_advertiser, make_operator

OPERATOR = {"Authorization": "Bearer op-secret"}
SLOGAN = "雨天出行，就近还伞"


def _png(width: int = 2, height: int = 2, seed: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + bytes([seed % 256, 0, 0]) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08free" + b"\x00" * 64


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        operator_token="op-secret",
        media_base_url="https://cdn.example.test",
        media_max_bytes=64 * 1024,
    )


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db)) as c:
        yield c


@pytest.fixture
def acme(client: TestClient) -> Account:
    return make_advertiser(client, "Acme", operator_headers=OPERATOR)


@pytest.fixture
def globex(client: TestClient) -> Account:
    return make_advertiser(client, "Globex", operator_headers=OPERATOR)


def _upload(client: TestClient, who: Account, data: bytes, **headers: str) -> dict[str, Any]:
    r = client.post("/api/v1/ads/media", content=data, headers={**who.headers, **headers})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _body(sha256: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "image",
        "duration_ms": 10_000,
        "title": SLOGAN,
        "body_text": "扫码借伞，地铁口就近归还",
        "declared_text": "",
        "sha256": sha256,
    }
    body.update(over)
    return body


def _submit(client: TestClient, who: Account, **over: Any) -> dict[str, Any]:
    media = _upload(client, who, _png(seed=len(over)))
    r = client.post(
        "/api/v1/ads/creatives", json=_body(media["sha256"], **over), headers=who.headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _count(db: Database, model: type[Any]) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_uploaded_media_is_served_back_by_its_sha256(client: TestClient, acme: Account) -> None:
    png = _png()
    media = _upload(client, acme, png)
    sha = hashlib.sha256(png).hexdigest()
    assert media == {
        "sha256": sha,
        "url": f"https://cdn.example.test/api/v1/media/{sha}",
        "size": len(png),
        "media_type": "image/png",
        "kind": "image",
    }
    assert _upload(client, acme, png, **{"X-Content-SHA256": sha.upper()})["sha256"] == sha
    got = client.get(f"/api/v1/media/{sha}")
    assert got.status_code == 200
    assert got.content == png
    assert got.headers["content-type"] == "image/png"
    assert got.headers["etag"] == f'"{sha}"'
    assert hashlib.sha256(got.content).hexdigest() == sha
    video = _upload(client, acme, MP4)
    assert (video["kind"], video["media_type"]) == ("video", "video/mp4")


def test_bad_uploads_are_refused_and_leave_no_file(
    client: TestClient, acme: Account, settings: Settings
) -> None:
    png = _png()
    wrong = "0" * 64
    cases = [
        (b"", {}, 400, "empty_media"),
        (b"%PDF-1.7 not a picture", {}, 415, "unsupported_media"),
        (png, {"X-Content-SHA256": wrong}, 400, "digest_mismatch"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (64 * 1024), {}, 413, "media_too_large"),
    ]
    for data, headers, code, error in cases:
        r = client.post("/api/v1/ads/media", content=data, headers={**acme.headers, **headers})
        assert r.status_code == code, r.text
        assert r.json()["error"] == error
    assert [p for p in settings.media_dir.rglob("*") if p.is_file()] == []
    assert client.get(f"/api/v1/media/{hashlib.sha256(png).hexdigest()}").status_code == 404
    assert client.get("/api/v1/media/not-a-digest").status_code == 422


def test_only_advertisers_upload_media(client: TestClient, acme: Account) -> None:
    assert client.post("/api/v1/ads/media", content=_png()).status_code == 401
    assert client.post("/api/v1/ads/media", content=_png(), headers=OPERATOR).status_code == 403


def test_a_slogan_waits_for_review_and_a_price_ad_is_rejected_naming_the_rule(
    client: TestClient, acme: Account
) -> None:
    slogan = _submit(client, acme)
    assert slogan["status"] == "pending"
    assert slogan["check"] is None
    assert slogan["media_url"].startswith("https://cdn.example.test/api/v1/media/")

    price_ad = _submit(client, acme, title="生椰拿铁", body_text="新品上市 ¥9.9/杯 限时三天")
    assert price_ad["status"] == "rejected"
    assert price_ad["check"]["rule"] == "per_unit_price"
    assert price_ad["check"]["match"] == "¥9.9/杯"
    assert "rule per_unit_price" in price_ad["check"]["message"]

    declared = _submit(client, acme, declared_text="视频结尾字幕：原价299 现价129")
    assert (declared["status"], declared["check"]["rule"]) == ("rejected", "was_now_price")


def test_advertisers_see_their_pending_approved_and_rejected_creatives(
    client: TestClient, acme: Account
) -> None:
    pending = _submit(client, acme, title="招商银行 · 因您而变")
    approved = _submit(client, acme, title="Think different.")
    rejected = _submit(client, acme, title="全场五折")
    r = client.post(f"/api/v1/ops/creatives/{approved['id']}/approve", json={}, headers=OPERATOR)
    assert r.status_code == 200, r.text

    listed = client.get("/api/v1/ads/creatives", headers=acme.headers).json()
    assert [c["id"] for c in listed["items"]] == [rejected["id"], approved["id"], pending["id"]]
    assert [c["status"] for c in listed["items"]] == ["rejected", "approved", "pending"]
    for wanted, creative in (("pending", pending), ("approved", approved), ("rejected", rejected)):
        only = client.get(
            "/api/v1/ads/creatives", params={"status": wanted}, headers=acme.headers
        ).json()
        assert [c["id"] for c in only["items"]] == [creative["id"]]
    one = client.get(f"/api/v1/ads/creatives/{approved['id']}", headers=acme.headers).json()
    assert one["status"] == "approved"
    assert one["reviewed_at"] is not None
    assert "reviewed_by" not in one
    page = client.get("/api/v1/ads/creatives", params={"limit": 2}, headers=acme.headers).json()
    assert page["next_before_id"] == approved["id"]
    bad = client.get("/api/v1/ads/creatives", params={"status": "live"}, headers=acme.headers)
    assert bad.status_code == 422


def test_operators_review_pending_creatives_first_and_every_decision_is_audited(
    client: TestClient, acme: Account, globex: Account
) -> None:
    ops = make_operator(client, "reviewer-1", operator_headers=OPERATOR)
    first = _submit(client, acme)
    rejected_by_check = _submit(client, globex, title="Lowest prices in town")
    second = _submit(client, globex, title="Welcome to Hangzhou")

    queue = client.get("/api/v1/ops/creatives", headers=ops.headers).json()
    assert [c["id"] for c in queue] == [first["id"], second["id"], rejected_by_check["id"]]
    assert [c["advertiser_name"] for c in queue] == ["Acme", "Globex", "Globex"]

    r = client.post(
        f"/api/v1/ops/creatives/{first['id']}/approve",
        json={"note": "brand slogan"},
        headers=ops.headers,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reviewed_by"]) == ("approved", "reviewer-1")
    r = client.post(
        f"/api/v1/ops/creatives/{second['id']}/reject",
        json={"note": "logo is blurred, upload a sharper image"},
        headers=ops.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["review_note"] == "logo is blurred, upload a sharper image"
    seen = client.get(f"/api/v1/ads/creatives/{second['id']}", headers=globex.headers).json()
    assert (seen["status"], seen["review_note"]) == (
        "rejected",
        "logo is blurred, upload a sharper image",
    )

    pending = client.get(
        "/api/v1/ops/creatives", params={"status": "pending"}, headers=ops.headers
    ).json()
    assert pending == []
    history = client.get(f"/api/v1/ops/creatives/{first['id']}", headers=ops.headers).json()
    assert [(a["actor"], a["action"], a["reason"]) for a in history["audit"]] == [
        ("reviewer-1", "creative.approve", "brand slogan")
    ]
    again = client.post(
        f"/api/v1/ops/creatives/{first['id']}/approve", json={}, headers=ops.headers
    )
    assert (again.status_code, again.json()["error"]) == (409, "not_reviewable")


def test_a_check_rejection_is_approved_only_with_override_and_a_note(
    client: TestClient, acme: Account, db: Database
) -> None:
    creative = _submit(client, acme, title="Priceless moments", body_text="Sale price? Never.")
    assert creative["check"]["rule"] == "price_word"
    url = f"/api/v1/ops/creatives/{creative['id']}/approve"
    for body in ({}, {"override": True}, {"note": "fine"}):
        r = client.post(url, json=body, headers=OPERATOR)
        assert (r.status_code, r.json()["error"]) == (409, "override_required")
        assert "price_word" in r.json()["message"]
    with db.transaction() as s:  # nothing about the creative (the advertiser's registration is)
        assert s.scalars(select(AuditLog.id).where(AuditLog.subject.like("creative:%"))).all() == []
    r = client.post(
        url,
        json={"override": True, "note": "a slogan saying there are no sales: false positive"},
        headers=OPERATOR,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "approved"
    assert out["check"]["rule"] == "price_word"
    assert out["reviewed_by"] == "operator-token"
    assert [a["action"] for a in out["audit"]] == ["creative.approve_override"]
    assert "check price_word" in out["audit"][0]["detail"]


def test_an_advertiser_cannot_see_or_touch_another_advertisers_creatives(
    client: TestClient, acme: Account, globex: Account
) -> None:
    theirs = _submit(client, globex)
    mine = _submit(client, acme)
    listed = client.get("/api/v1/ads/creatives", headers=acme.headers).json()
    assert [c["id"] for c in listed["items"]] == [mine["id"]]
    r = client.get(f"/api/v1/ads/creatives/{theirs['id']}", headers=acme.headers)
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    missing = client.get("/api/v1/ads/creatives/999999", headers=acme.headers)
    assert missing.json()["message"].replace("999999", "X") == r.json()["message"].replace(
        str(theirs["id"]), "X"
    )
    edit = _body(theirs["sha256"], title="Acme was here")
    r = client.put(f"/api/v1/ads/creatives/{theirs['id']}", json=edit, headers=acme.headers)
    assert r.status_code == 404
    for action, body in (("approve", {}), ("reject", {"note": "sabotage"})):
        r = client.post(
            f"/api/v1/ops/creatives/{theirs['id']}/{action}", json=body, headers=acme.headers
        )
        assert r.status_code == 403
    assert client.get("/api/v1/ops/creatives", headers=acme.headers).status_code == 403
    after = client.get(f"/api/v1/ads/creatives/{theirs['id']}", headers=globex.headers).json()
    assert (after["title"], after["status"]) == (SLOGAN, "pending")


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"kind": "hologram"}, "kind"),
        ({"duration_ms": 0}, "duration_ms"),
        ({"duration_ms": 3_600_001}, "duration_ms"),
        ({"sha256": "abc123"}, "sha256"),
        ({"sha256": "g" * 64}, "sha256"),
        ({"body_text": "雨" * 2001}, "body_text"),
        ({"declared_text": "x" * 2001}, "declared_text"),
        ({"title": "   "}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"price_fen": 100}, "price_fen"),
    ],
)
def test_malformed_creatives_are_refused_and_nothing_is_stored(
    client: TestClient, acme: Account, db: Database, over: dict[str, Any], field: str
) -> None:
    media = _upload(client, acme, _png())
    body = {**_body(media["sha256"]), **over}
    r = client.post("/api/v1/ads/creatives", json=body, headers=acme.headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request"
    assert field in r.json()["message"]
    assert _count(db, Creative) == 0


def test_a_creative_needs_uploaded_media_of_its_kind(
    client: TestClient, acme: Account, db: Database
) -> None:
    never_uploaded = hashlib.sha256(b"elsewhere").hexdigest()
    r = client.post("/api/v1/ads/creatives", json=_body(never_uploaded), headers=acme.headers)
    assert (r.status_code, r.json()["error"]) == (400, "media_not_uploaded")
    video = _upload(client, acme, MP4)
    r = client.post(
        "/api/v1/ads/creatives", json=_body(video["sha256"], kind="image"), headers=acme.headers
    )
    assert (r.status_code, r.json()["error"]) == (400, "kind_mismatch")
    assert _count(db, Creative) == 0
    r = client.post(
        "/api/v1/ads/creatives", json=_body(video["sha256"], kind="video"), headers=acme.headers
    )
    assert r.status_code == 201, r.text


def test_a_rejected_creative_is_edited_and_checked_again_but_an_approved_one_is_not(
    client: TestClient, acme: Account
) -> None:
    creative = _submit(client, acme, title="仅售39元")
    assert creative["status"] == "rejected"
    url = f"/api/v1/ads/creatives/{creative['id']}"
    still_price = _body(creative["sha256"], title="Only $5 today")
    r = client.put(url, json=still_price, headers=acme.headers)
    assert (r.json()["status"], r.json()["check"]["rule"]) == ("rejected", "currency_amount")
    r = client.put(url, json=_body(creative["sha256"], title="就近还伞"), headers=acme.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["check"], r.json()["title"]) == (
        "pending",
        None,
        "就近还伞",
    )
    client.post(f"/api/v1/ops/creatives/{creative['id']}/approve", json={}, headers=OPERATOR)
    r = client.put(
        url, json=_body(creative["sha256"], title="Swap after approval"), headers=acme.headers
    )
    assert (r.status_code, r.json()["error"]) == (409, "creative_approved")
    assert client.get(url, headers=acme.headers).json()["title"] == "就近还伞"


def _booking(db: Database, advertiser_id: int, creative_ids: list[int]) -> int:
    now = clock.now()
    with db.transaction() as s:
        booking = Booking(
            advertiser_id=advertiser_id,
            name="Autumn campaign",
            status=BookingStatus.CONFIRMED,
            spots_per_loop=1,
            start_date=date(2026, 12, 1),
            end_date=date(2026, 12, 31),
            dayparts="07-10",
            selection='{"kiosk_ids": []}',
            price_fen=100_00,
            held_until=None,
            confirmed_at=now,
            ended_at=None,
            revision=1,
            created_at=now,
            updated_at=now,
        )
        s.add(booking)
        s.flush()
        for creative_id in creative_ids:
            s.add(BookingCreative(booking_id=booking.id, creative_id=creative_id))
        return booking.id


def _revision(db: Database, booking_id: int) -> tuple[int, Any]:
    with db.transaction() as s:
        b = s.get(Booking, booking_id)
        assert b is not None
        return b.revision, b.updated_at


def test_approval_and_rejection_bump_the_revision_of_bookings_that_use_the_creative(
    client: TestClient, acme: Account, db: Database
) -> None:
    used = _submit(client, acme)
    other = _submit(client, acme, title="Welcome to Hangzhou")
    uses_it = _booking(db, acme.id, [used["id"], other["id"]])
    also_uses_it = _booking(db, acme.id, [used["id"]])
    does_not = _booking(db, acme.id, [other["id"]])
    untouched = _revision(db, does_not)

    clock.advance(timedelta(minutes=5))
    approved_at = clock.now()
    r = client.post(f"/api/v1/ops/creatives/{used['id']}/approve", json={}, headers=OPERATOR)
    assert r.status_code == 200, r.text
    for booking_id in (uses_it, also_uses_it):
        revision, updated_at = _revision(db, booking_id)
        assert revision == 2
        assert updated_at >= approved_at
    assert _revision(db, does_not) == untouched

    clock.advance(timedelta(minutes=5))
    pulled_at = clock.now()
    r = client.post(
        f"/api/v1/ops/creatives/{used['id']}/reject",
        json={"note": "complaint: misleading claim"},
        headers=OPERATOR,
    )
    assert r.status_code == 200, r.text
    revision, updated_at = _revision(db, uses_it)
    assert revision == 3
    assert updated_at >= pulled_at
    assert _revision(db, does_not) == untouched
    assert "bookings touched" in r.json()["audit"][-1]["detail"]


def test_unused_media_is_pruned_once_old_and_used_media_is_kept(
    client: TestClient, acme: Account, db: Database, settings: Settings
) -> None:
    used = _submit(client, acme)
    unused = _upload(client, acme, _png(seed=7))
    abandoned = settings.media_dir / "tmp" / "upload-abandoned"
    abandoned.write_bytes(b"\x89PNG\r\n")
    store = MediaStore(settings.media_dir, settings.media_url_base)
    with db.transaction() as s:
        assert jobs.prune_unused_media(s, store, clock.now(), timedelta(days=2)) == 0
    clock.advance(timedelta(days=3))
    with db.transaction() as s:
        assert jobs.prune_unused_media(s, store, clock.now(), timedelta(days=2)) == 2
    assert client.get(f"/api/v1/media/{used['sha256']}").status_code == 200
    assert client.get(f"/api/v1/media/{unused['sha256']}").status_code == 404
    assert not abandoned.exists()
    again = Account(acme.id, acme.login, log_in(client, acme.login, "pw-Acme-secret"))
    assert _upload(client, again, _png(seed=7))["sha256"] == unused["sha256"]
    assert client.get(f"/api/v1/media/{unused['sha256']}").status_code == 200
