"""Golden vectors: the checked-in bytes are the contract (firmware_protocol/SPEC.md §10).

These tests read the JSON files and never regenerate them, so any change to bytes on the
wire fails here first.
"""

from __future__ import annotations

import re
from pathlib import Path

import cbor2
import pytest

from firmware_protocol import golden, make_vectors
from firmware_protocol.codec import (
    DecodeError,
    decode_downlink,
    decode_uplink,
    encode,
    msg_type,
    topic_for,
)
from firmware_protocol.messages import Heartbeat, MsgType

VECTORS = golden.load_vectors()
INVALID = golden.load_invalid()
SPEC = (Path(golden.__file__).parent / "SPEC.md").read_text(encoding="utf-8")


def _decode(direction: str, topic: str, payload: bytes) -> object:
    decode = decode_uplink if direction == "up" else decode_downlink
    return decode(topic, payload)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)
def test_golden_payload_decodes_to_its_message(v: golden.Vector) -> None:
    assert _decode(v.direction, v.topic, v.payload) == golden.message_from_dict(v.message)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)
def test_golden_message_encodes_to_exactly_its_bytes(v: golden.Vector) -> None:
    msg = golden.message_from_dict(v.message)
    assert encode(msg) == v.payload
    assert topic_for(msg) == v.topic


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)
def test_golden_message_dict_survives_the_json_round_trip(v: golden.Vector) -> None:
    assert golden.message_to_dict(golden.message_from_dict(v.message)) == v.message


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)
def test_golden_diagnostic_notation_matches_the_bytes(v: golden.Vector) -> None:
    assert golden.diagnostic(cbor2.loads(v.payload)) == v.diag


@pytest.mark.parametrize("v", INVALID, ids=lambda v: v.name)
def test_invalid_vector_is_rejected_with_its_reason(v: golden.InvalidVector) -> None:
    with pytest.raises(DecodeError) as caught:
        _decode(v.direction, v.topic, v.payload)
    assert caught.value.reason == v.reason


def test_every_message_type_has_a_golden_vector_in_its_own_file() -> None:
    by_type = {msg_type(golden.message_from_dict(v.message)): v.file for v in VECTORS}
    assert set(by_type) == set(MsgType)
    assert all(file == f"{golden.type_name(t)}.json" for t, file in by_type.items())


def test_every_result_code_and_slot_state_kind_has_a_golden_vector() -> None:
    statuses = {v.message["status"] for v in VECTORS if v.message["type"] == "cmd_result"}
    assert statuses == {
        "ok",
        "taken",
        "not_taken",
        "jammed",
        "empty",
        "expired",
        "bad_slot",
        "rejected",
    }
    slots = [s for v in VECTORS if v.message["type"] == "heartbeat" for s in v.message["slots"]]
    kinds = {(s["tag"] is not None, s["fault"] is not None) for s in slots}
    assert kinds == {(False, False), (True, False), (True, True), (False, True)}


def test_every_decode_error_reason_named_in_the_spec_has_an_invalid_vector() -> None:
    section = SPEC.split("<!-- reasons -->")[1].split("<!-- /reasons -->")[0]
    spec_reasons = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    assert spec_reasons == {v.reason for v in INVALID}


def test_vector_names_are_unique() -> None:
    names = [v.name for v in VECTORS] + [v.name for v in INVALID]
    assert len(names) == len(set(names))


def test_spec_heartbeat_size_is_the_golden_heartbeat_size() -> None:
    hb = golden.vector("heartbeat_full_22_slots")
    msg = golden.message_from_dict(hb.message)
    assert isinstance(msg, Heartbeat)
    assert len(msg.slots) == 22
    assert all(s.tag is not None and len(s.tag) == 8 for s in msg.slots)
    stated = re.search(
        r"^Heartbeat payload size: CBOR (\d+) bytes, JSON (\d+) bytes\.$", SPEC, re.M
    )
    assert stated is not None, "SPEC.md lost its heartbeat size line"
    assert int(stated.group(1)) == len(hb.payload) == len(encode(msg))
    assert int(stated.group(2)) == len(make_vectors.json_equivalent(msg))


def test_spec_cellular_table_is_what_the_golden_heartbeat_costs() -> None:
    msg = golden.message_from_dict(golden.vector("heartbeat_full_22_slots").message)
    assert isinstance(msg, Heartbeat)
    for line in make_vectors.cellular_table(msg).splitlines():
        assert line in SPEC.splitlines(), f"SPEC.md §11 is stale; regenerate: {line}"
