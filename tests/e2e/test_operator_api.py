"""Operators reach kiosks through the HTTP API: commands with the kiosk's own answer, and the
bridge's counters with the reason for every rejected uplink."""

from __future__ import annotations

from sqlalchemy import func, select

from firmware_protocol import topics
from firmware_protocol.messages import MsgType
from server.models import AuditLog, CommandRecord
from tests.e2e.conftest import KioskImpostor, Stack
from tests.services import eventually


def test_operator_pings_a_kiosk_and_unlocks_a_slot_and_sees_it_empty(stack: Stack) -> None:
    fleet = stack.start_fleet(stack.credentials[:1], heartbeat_s=60, unlock_window_s=5)
    fleet.wait_all_online()
    k = fleet.kiosk(fleet.kiosk_ids[0])
    eventually(lambda: _assert(stack.kiosk(k.kiosk_id)["online"] is True))
    slot, tag = min(k.umbrellas().items())

    pong = stack.api.post(f"/api/v1/kiosks/{k.kiosk_id}/commands", json={"op": "ping"})
    assert pong.status_code == 200, pong.text
    assert pong.json()["status"] == "ok"

    r = stack.api.post(f"/api/v1/kiosks/{k.kiosk_id}/commands", json={"op": "unlock", "slot": slot})
    assert r.status_code == 200, r.text
    assert r.json() | {"command_id": "-"} == {
        "command_id": "-",
        "kiosk_id": k.kiosk_id,
        "status": "taken",
        "slot": slot,
        "tag": tag.hex().upper(),
    }
    eventually(lambda: _assert(stack.kiosk(k.kiosk_id)["slots"][slot - 1]["status"] == "empty"))
    # Issue 5: every command an operator sends is audit-logged (no operator token in this
    # stack's settings: the shared-token principal).
    with stack.db.transaction() as s:
        audited = [
            (a.actor, a.action, a.subject, a.detail)
            for a in s.scalars(
                select(AuditLog).where(AuditLog.action == "kiosk.command").order_by(AuditLog.id)
            )
        ]
    assert audited == [
        ("operator-token", "kiosk.command", f"kiosk:{k.kiosk_id}", "ping"),
        ("operator-token", "kiosk.command", f"kiosk:{k.kiosk_id}", f"unlock slot {slot}"),
    ]


def test_command_to_an_offline_kiosk_is_refused_with_the_reason_and_nothing_is_sent(
    stack: Stack,
) -> None:
    never_connected = stack.credentials[0].kiosk_id

    r = stack.api.post(f"/api/v1/kiosks/{never_connected}/commands", json={"op": "ping"})

    assert r.status_code == 409, r.text
    assert r.json()["message"] == f"kiosk {never_connected} is offline"
    with stack.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(CommandRecord)) == 0
        commands_audited = select(func.count()).where(AuditLog.action == "kiosk.command")
        assert s.scalar(commands_audited) == 0


def test_command_the_kiosk_never_answers_times_out_with_504(stack: Stack) -> None:
    fleet = stack.start_fleet(stack.credentials[:1], heartbeat_s=60)
    fleet.wait_all_online()
    k = fleet.kiosk(fleet.kiosk_ids[0])
    eventually(lambda: _assert(stack.kiosk(k.kiosk_id)["online"] is True))
    k.set_faults(lose_results=1.0)

    r = stack.api.post(f"/api/v1/kiosks/{k.kiosk_id}/commands", json={"op": "ping", "timeout_s": 1})

    assert r.status_code == 504, r.text
    assert r.json()["error"] == "timeout"
    with stack.db.transaction() as s:
        assert list(s.scalars(select(CommandRecord.status))) == ["timeout"]


def test_bad_commands_are_refused_with_clear_errors(stack: Stack) -> None:
    kiosk_id = stack.credentials[0].kiosk_id
    cases = [
        ("K999999", {"op": "ping"}, 404, "kiosk K999999"),
        (kiosk_id, {"op": "unlock"}, 422, "slot: an unlock needs the slot number"),
        (kiosk_id, {"op": "reboot"}, 422, "op:"),
        (kiosk_id, {"op": "unlock", "slot": 23}, 422, "has 22 slots, not 23"),
    ]
    for target, body, code, text in cases:
        r = stack.api.post(f"/api/v1/kiosks/{target}/commands", json=body)
        assert r.status_code == code, (body, r.text)
        assert text in r.json()["message"], (body, r.text)
    with stack.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(CommandRecord)) == 0


def test_uplink_stats_count_rejected_payloads_and_say_why(stack: Stack) -> None:
    impostor = KioskImpostor(stack.port, stack.credentials[0])
    try:
        assert not impostor.connack().is_failure
        own_topic = topics.uplink(stack.credentials[0].kiosk_id, MsgType.HEARTBEAT)
        impostor.publish(own_topic, b"\xff\x00 not cbor")
        impostor.publish(own_topic, b"\x80")  # an empty CBOR array: not an envelope
    finally:
        impostor.close()

    def counted() -> dict[str, object]:
        r = stack.api.get("/api/v1/uplinks/stats")
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        assert body["rejected_last_24h"] == {"not_cbor": 1, "bad_envelope": 1}
        counters = body["counters"]  # bumped just after the commit that stored the rows
        assert isinstance(counters, dict)
        assert sum(v for k, v in counters.items() if k.endswith(".rejected.not_cbor")) == 1
        return body

    body = eventually(counted)
    recent = body["recent_rejections"]
    assert isinstance(recent, list)
    assert [(r["topic"], r["reason"]) for r in recent] == [
        (own_topic, "bad_envelope"),
        (own_topic, "not_cbor"),
    ]


def _assert(condition: bool) -> None:
    assert condition
