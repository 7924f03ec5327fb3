"""Playlists end to end (SPEC §4 Playlists): an advertiser's approved creative and confirmed
booking, compiled by the scheduler's job and pushed retained through the real Mosquitto; the
simulated kiosks store and acknowledge it, report its version in heartbeats and play the
booked spot codes; pulling the creative reaches the same kiosks again, and an operator sees
why each kiosk plays what it plays."""

from __future__ import annotations

import struct
import zlib
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from device_sim.fleet import KioskHandle
from firmware_protocol.messages import Play
from server.core.clock import clock
from server.playlists import jobs
from tests.accounts_env import make_advertiser
from tests.e2e.conftest import WAIT_S, Stack
from tests.services import eventually

#: The real Mosquitto stack only: this is the path a production kiosk takes.
pytestmark = pytest.mark.parametrize("stack", ["production"], indirect=True)


def tiny_png() -> bytes:
    """A valid 1x1 PNG: the media upload reads the type from the file itself."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x1f\x6f\xeb")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def ok(r: Any, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def compile_and_push(stack: Stack) -> jobs.CompileSummary:
    """One run of the scheduler's job, publishing over a connection to the stack's broker."""
    assert stack.bridge is not None
    return jobs.compile_and_push(
        stack.db, stack.bridge.connection, clock.now(), settings=stack.settings
    )


def acknowledged(stack: Stack, kiosk_id: str, version: int) -> dict[str, Any]:
    """The kiosk has answered `ok` to `version` and its heartbeat reports playing it."""
    body = ok(stack.api.get(f"/api/v1/ops/kiosks/{kiosk_id}/playlists"))
    latest = body["versions"][0]
    assert latest["version"] == version
    assert latest["published_at"] is not None
    assert latest["acked_at"] is not None
    assert latest["ack_result"] == "ok"
    assert body["reported_version"] == version
    return body


def played(k: KioskHandle, version: int) -> set[str]:
    return {
        m.creative_id for m in k.uplinks() if isinstance(m, Play) and m.playlist_version == version
    }


def loop_on_screen(stack: Stack, kiosk_id: str) -> list[dict[str, Any]]:
    """ "Why does this kiosk play this now", asked for each second of one 6-s loop."""
    start = clock.now().replace(microsecond=0)
    out = []
    for i in range(6):
        at = (start + timedelta(seconds=i)).isoformat()
        body = ok(stack.api.get(f"/api/v1/ops/kiosks/{kiosk_id}/playing", params={"at": at}))
        out.append(body)
    return out


def test_a_confirmed_booking_is_pushed_acknowledged_and_played_and_a_pulled_creative_follows(
    stack: Stack,
) -> None:
    api = stack.api
    booked_ids = [c.kiosk_id for c in stack.credentials[:2]]
    other_id = stack.credentials[2].kiosk_id
    for kiosk_id in [*booked_ids, other_id]:  # 1-s spots, six per loop: plays come fast
        ok(
            api.patch(
                f"/api/v1/kiosks/{kiosk_id}/ad-screen", json={"loop_seconds": 6, "spot_seconds": 1}
            )
        )
    adv = make_advertiser(api, "Rainy Day Tea")
    media = ok(
        api.post(
            "/api/v1/ads/media",
            content=tiny_png(),
            headers={**adv.headers, "Content-Type": "application/octet-stream"},
        ),
        201,
    )
    creative = ok(
        api.post(
            "/api/v1/ads/creatives",
            json={
                "kind": "image",
                "duration_ms": 1000,
                "title": "雨天出行，就近还伞",
                "sha256": media["sha256"],
            },
            headers=adv.headers,
        ),
        201,
    )
    assert creative["status"] == "pending"
    ok(api.post(f"/api/v1/ops/creatives/{creative['id']}/approve", json={"note": "fine"}))
    # Booked an hour ago, so the hour on the clock now is part of it (a booking starts with
    # the next hour that has not begun).
    clock.advance(timedelta(hours=-1))
    today = clock.now().astimezone(ZoneInfo("Asia/Shanghai")).date()
    booking = ok(
        api.post(
            "/api/v1/ads/bookings",
            json={
                "name": "Winter rain",
                "spots_per_loop": 2,
                "start_date": today.isoformat(),
                "end_date": (today + timedelta(days=2)).isoformat(),
                "dayparts": "00-24",
                "selection": {"kiosk_ids": booked_ids},
                "creative_ids": [creative["id"]],
            },
            headers=adv.headers,
        ),
        201,
    )
    ok(api.post(f"/api/v1/ads/bookings/{booking['id']}/confirm", headers=adv.headers))
    clock.reset()
    code = f"b{booking['id']}-c{creative['id']}"

    fleet = stack.start_fleet(stack.credentials[:3], screen=True, heartbeat_s=1)
    fleet.wait_all_online()
    first = compile_and_push(stack)

    assert first.failed == []
    assert first.published >= 3
    for kiosk_id in booked_ids:
        eventually(lambda k=kiosk_id: acknowledged(stack, k, 1), timeout_s=WAIT_S)
        eventually(lambda k=kiosk_id: _assert(code in played(fleet.kiosk(k), 1)), timeout_s=WAIT_S)
    eventually(lambda: acknowledged(stack, other_id, 1), timeout_s=WAIT_S)
    eventually(lambda: _assert(played(fleet.kiosk(other_id), 1) != set()), timeout_s=WAIT_S)
    assert all(c.startswith("house-") for c in played(fleet.kiosk(other_id), 1))

    # The operator's "why": two booked spots per loop, the rest house content.
    why = loop_on_screen(stack, booked_ids[0])
    booked = [w["spot"] for w in why if w["spot"]["rule"] == "booked"]
    assert len(booked) == 2
    assert {(s["code"], s["booking_id"], s["daypart"], s["advertiser_name"]) for s in booked} == {
        (code, booking["id"], "00-24", "Rainy Day Tea")
    }
    assert {w["spot"]["rule"] for w in why} == {"booked", "house"}
    assert all(w["version"] == 1 and w["source"] == "reported" for w in why)

    # The operator pulls the creative off the screens: the booked kiosks get a new version.
    ok(api.post(f"/api/v1/ops/creatives/{creative['id']}/reject", json={"note": "logo blurred"}))
    second = compile_and_push(stack)

    assert (second.due, second.new_versions) == (2, 2)
    for kiosk_id in booked_ids:
        eventually(lambda k=kiosk_id: acknowledged(stack, k, 2), timeout_s=WAIT_S)
        eventually(lambda k=kiosk_id: _assert(played(fleet.kiosk(k), 2) != set()), timeout_s=WAIT_S)
        assert code not in played(fleet.kiosk(kiosk_id), 2)
    acknowledged(stack, other_id, 1)  # not affected, not touched
    why = loop_on_screen(stack, booked_ids[1])
    held = [w for w in why if w["spot"]["booking_id"] == booking["id"]]
    assert len(held) == 2
    assert all(w["spot"]["rule"] == "house" for w in held)
    assert all(w["spot"]["note"] == "creative not approved" for w in held)
    assert all("no approved creative" in w["explanation"] for w in held)


def _assert(condition: bool) -> None:
    assert condition
