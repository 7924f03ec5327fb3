"""Regenerate firmware_protocol/vectors/*.json and print SPEC.md's cellular-data table.

    python -m firmware_protocol.make_vectors          # rewrite the vector files
    python -m firmware_protocol.make_vectors --table  # print the table for SPEC.md §11

Deterministic: no clock, no randomness. The tests compare the codec against the checked-in
files, never against this script, so a codec change that alters bytes on the wire shows
up as a failing test and, after a deliberate regeneration, as a diff to review.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from firmware_protocol import golden
from firmware_protocol.codec import MAX_UPLINK_BYTES, encode, msg_type, topic_for
from firmware_protocol.messages import (
    EMPTY_SLOT,
    Boot,
    CmdOp,
    CmdResult,
    CmdStatus,
    Command,
    Config,
    Fault,
    Heartbeat,
    Message,
    MsgType,
    Offline,
    Online,
    Play,
    Playlist,
    PlaylistBlock,
    PlaylistSpot,
    SlotEvent,
    SlotEventKind,
    SlotState,
)

K = "SZ-0427"  # a kiosk id as the fleet issues them: city prefix + number
TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms
SEQ = 518_400  # about a year of heartbeats and events: a 4-byte CBOR uint


def tag(i: int) -> bytes:
    """An 8-byte ISO 15693 UID (E0, manufacturer 04), one per umbrella."""
    return bytes([0xE0, 0x04, 0x01, 0x50, 0x0A, 0x3C, i >> 8 & 0xFF, i & 0xFF])


def sha(i: int) -> bytes:
    return bytes((i * 7 + j) & 0xFF for j in range(32))


FULL_HEARTBEAT = Heartbeat(
    K, SEQ, TS, -71, tuple(SlotState(tag=tag(100 + i)) for i in range(22)), playlist_version=17
)

MIXED_SLOTS = (
    SlotState(tag=tag(1)),
    EMPTY_SLOT,
    SlotState(tag=tag(3)),
    SlotState(fault=1, tag=tag(4)),  # lock jammed with an umbrella inside
    SlotState(fault=3),  # RFID reader dead, contents unknown
    *(EMPTY_SLOT for _ in range(10)),
    *(SlotState(tag=tag(20 + i)) for i in range(7)),
)
assert len(MIXED_SLOTS) == 22

UNLOCK_ID = "c-7f3a9e2b41d04c5f"

VALID: dict[str, list[tuple[str, str, Message]]] = {
    "boot": [
        (
            "boot",
            "after power-on: firmware, slot count, connection counter",
            Boot(K, 1, TS, "2.4.1+h3", 22, 1),
        ),
        (
            "boot_large_counters",
            "seq and conn near the uint32 end",
            Boot(K, 4_294_967_295, TS, "2.4.1", 22, 4_294_967_295),
        ),
    ],
    "heartbeat": [
        (
            "heartbeat_full_22_slots",
            "every slot holds an umbrella; the cellular-data figures in §11 use this one",
            FULL_HEARTBEAT,
        ),
        (
            "heartbeat_mixed",
            "umbrellas, empties, a jammed slot keeping its tag, a fault with no tag",
            Heartbeat(K, SEQ + 1, TS + 60_000, -93, MIXED_SLOTS, 17),
        ),
        (
            "heartbeat_empty_no_playlist",
            "all 22 slots empty; no playlist yet, so no plv key",
            Heartbeat(K, 2, TS, -113, tuple(EMPTY_SLOT for _ in range(22))),
        ),
    ],
    "slot_event": [
        (
            "slot_event_in_return",
            "an umbrella was inserted (a return); tag required",
            SlotEvent(K, SEQ + 2, TS + 1_234, 7, SlotEventKind.INSERTED, tag(7)),
        ),
        (
            "slot_event_out_after_unlock",
            "the umbrella left slot 12 after unlock command c-7f3a...",
            SlotEvent(K, SEQ + 3, TS + 5_017, 12, SlotEventKind.REMOVED, tag(12), UNLOCK_ID),
        ),
        (
            "slot_event_out_forced_unknown_tag",
            "forced removal; the reader could not read the tag",
            SlotEvent(K, SEQ + 4, TS + 9_000, 22, SlotEventKind.REMOVED, None),
        ),
    ],
    "cmd_result": [
        (
            "cmd_result_taken",
            "unlock: the umbrella left the slot",
            CmdResult(K, SEQ + 5, TS + 5_020, UNLOCK_ID, CmdStatus.TAKEN, 12, tag(12)),
        ),
        (
            "cmd_result_not_taken",
            "unlock: nobody took it, the slot re-locked",
            CmdResult(K, SEQ + 6, TS + 35_000, "c-01", CmdStatus.NOT_TAKEN, 3, tag(3)),
        ),
        (
            "cmd_result_jammed",
            "unlock: the lock did not open",
            CmdResult(K, SEQ + 7, TS, "c-02", CmdStatus.JAMMED, 4, tag(4)),
        ),
        (
            "cmd_result_empty",
            "unlock: the slot was empty",
            CmdResult(K, SEQ + 8, TS, "c-03", CmdStatus.EMPTY, 2),
        ),
        (
            "cmd_result_expired",
            "the command arrived after exp; not executed",
            CmdResult(K, SEQ + 9, TS, "c-04", CmdStatus.EXPIRED, 5),
        ),
        (
            "cmd_result_bad_slot",
            "unlock of a slot this kiosk does not have",
            CmdResult(K, SEQ + 10, TS, "c-05", CmdStatus.BAD_SLOT, 30),
        ),
        ("cmd_result_ok_ping", "ping answered", CmdResult(K, SEQ + 11, TS, "c-06", CmdStatus.OK)),
        (
            "cmd_result_ok_playlist",
            "playlist applied (answer to a playlist downlink)",
            CmdResult(K, SEQ + 12, TS, "pl-17", CmdStatus.OK),
        ),
        (
            "cmd_result_rejected",
            "malformed or unsupported downlink",
            CmdResult(K, SEQ + 13, TS, "c-07", CmdStatus.REJECTED),
        ),
    ],
    "play": [
        (
            "play",
            "proof of play: one 10-s spot",
            Play(
                K,
                SEQ + 14,
                TS + 70_000,
                bytes(range(0x10, 0x20)),
                "cr-880",
                TS + 60_000,
                10_000,
                17,
            ),
        ),
    ],
    "fault": [
        (
            "fault_slot_active",
            "lock of slot 4 jammed, with a UTF-8 detail text",
            Fault(K, SEQ + 15, TS, 1, True, 4, "锁舌卡住 lock bolt stuck"),
        ),
        (
            "fault_kiosk_cleared",
            "kiosk-wide fault cleared; no slot, no detail",
            Fault(K, SEQ + 16, TS, 32, False),
        ),
    ],
    "online": [
        ("online", "published right after CONNACK; seq 0, ordered by conn", Online(K, 0, TS, 57)),
    ],
    "offline": [
        (
            "offline_will",
            "the Last Will registered at CONNECT (same conn as the Online)",
            Offline(K, 0, TS - 800, 57),
        ),
    ],
    "command": [
        (
            "command_unlock",
            "unlock slot 12 unless the kiosk clock is past exp",
            Command(K, 90_001, TS + 5_000, UNLOCK_ID, CmdOp.UNLOCK, TS + 35_000, 12),
        ),
        (
            "command_ping",
            "ping: answer ok",
            Command(K, 90_002, TS, "c-06", CmdOp.PING, TS + 30_000),
        ),
    ],
    "playlist": [
        (
            "playlist",
            "two disjoint blocks; the second is empty (screen idle)",
            Playlist(
                K,
                90_003,
                TS,
                "pl-17",
                17,
                (
                    PlaylistBlock(
                        TS,
                        TS + 3_600_000,
                        (
                            PlaylistSpot(
                                "cr-880", 10_000, "https://cdn.example.cn/c/880.mp4", sha(1)
                            ),
                            PlaylistSpot(
                                "house-1", 10_000, "https://cdn.example.cn/h/1.png", sha(2)
                            ),
                        ),
                    ),
                    PlaylistBlock(TS + 3_600_000, TS + 7_200_000, ()),
                ),
            ),
        ),
    ],
    "config": [
        (
            "config",
            "heartbeat every 60 s, unlock window 30 s",
            Config(K, 90_004, TS, "cfg-3", 60, 30),
        ),
    ],
}


def env(t: Any, body: Any, *, kiosk: Any = K, seq: Any = 5, ts: Any = TS, ver: Any = 1) -> bytes:
    return cbor2.dumps([ver, t, kiosk, seq, ts, body])


HB, SE, BOOT, CMD, PL, CFG = 2, 3, 1, 64, 65, 66
UP = f"umb/1/{K}"
SLOTS_OK = [tag(1)] * 22
GOOD_BOOT = encode(VALID["boot"][0][2])
GOOD_HB = encode(FULL_HEARTBEAT)


def _blocks(*spans: tuple[int, int]) -> list[Any]:
    return [[a, b, [["cr-1", 10_000, "https://x/1", sha(1)]]] for a, b in spans]


INVALID: list[tuple[str, str, str, bytes, str, str]] = [
    # name, direction, topic, payload, reason, note
    (
        "not_cbor_garbage",
        "up",
        f"{UP}/up/boot",
        b"\xff\x00",
        "not_cbor",
        "a break byte outside any container",
    ),
    (
        "not_cbor_truncated",
        "up",
        f"{UP}/up/hb",
        GOOD_HB[:-1],
        "not_cbor",
        "the golden full heartbeat minus its last byte",
    ),
    (
        "not_cbor_trailing_bytes",
        "up",
        f"{UP}/up/boot",
        GOOD_BOOT + b"\x00",
        "not_cbor",
        "a valid boot followed by one more byte: a payload is exactly one CBOR item",
    ),
    (
        "not_cbor_invalid_utf8",
        "up",
        f"{UP}/up/boot",
        bytes.fromhex("8601016753") + b"Z-\xff427" + bytes.fromhex("0500a0"),
        "not_cbor",
        "kiosk id text string that is not UTF-8",
    ),
    (
        "oversized_uplink",
        "up",
        f"{UP}/up/hb",
        cbor2.dumps(bytes(MAX_UPLINK_BYTES - 2)),
        "oversized",
        f"{MAX_UPLINK_BYTES + 1} bytes, checked before anything else",
    ),
    (
        "bad_topic_unknown_name",
        "up",
        f"{UP}/up/telemetry",
        GOOD_BOOT,
        "bad_topic",
        "no such uplink name",
    ),
    (
        "bad_topic_other_root",
        "up",
        f"umb/2/{K}/up/boot",
        GOOD_BOOT,
        "bad_topic",
        "another protocol root",
    ),
    (
        "bad_topic_downlink_on_uplink_decoder",
        "up",
        f"{UP}/down/cmd",
        GOOD_BOOT,
        "bad_topic",
        "the uplink decoder accepts only .../up/... topics",
    ),
    (
        "bad_topic_bad_kiosk_id",
        "up",
        "umb/1/SZ 0427/up/boot",
        GOOD_BOOT,
        "bad_topic",
        "kiosk ids are [A-Za-z0-9_-]{1,32}",
    ),
    (
        "bad_envelope_map",
        "up",
        f"{UP}/up/boot",
        cbor2.dumps({"v": 1, "t": 1}),
        "bad_envelope",
        "the envelope is an array, not a map",
    ),
    (
        "bad_envelope_five_items",
        "up",
        f"{UP}/up/boot",
        cbor2.dumps([1, 1, K, 5, TS]),
        "bad_envelope",
        "the body is missing",
    ),
    (
        "bad_envelope_seven_items",
        "up",
        f"{UP}/up/boot",
        cbor2.dumps([1, 1, K, 5, TS, {}, 0]),
        "bad_envelope",
        "one item too many",
    ),
    (
        "bad_version_2",
        "up",
        f"{UP}/up/boot",
        env(BOOT, {"fw": "x", "n": 22, "conn": 1}, ver=2),
        "bad_version",
        "a version this decoder does not speak",
    ),
    (
        "bad_version_text",
        "up",
        f"{UP}/up/boot",
        env(BOOT, {}, ver="1"),
        "bad_version",
        "the version is an unsigned integer",
    ),
    (
        "bad_version_true",
        "up",
        f"{UP}/up/boot",
        env(BOOT, {}, ver=True),
        "bad_version",
        "true is not 1",
    ),
    (
        "unknown_type_9",
        "up",
        f"{UP}/up/boot",
        env(9, {}),
        "unknown_type",
        "type code 9 is not assigned",
    ),
    (
        "unknown_type_text",
        "up",
        f"{UP}/up/hb",
        env("hb", {}),
        "unknown_type",
        "type codes are integers",
    ),
    (
        "type_topic_mismatch_heartbeat_on_slot",
        "up",
        f"{UP}/up/slot",
        GOOD_HB,
        "type_topic_mismatch",
        "a heartbeat published on the slot topic",
    ),
    (
        "type_topic_mismatch_command_on_playlist",
        "down",
        f"{UP}/down/playlist",
        encode(VALID["command"][0][2]),
        "type_topic_mismatch",
        "a command published on the playlist topic",
    ),
    (
        "wrong_kiosk_other_id",
        "up",
        "umb/1/SZ-0428/up/boot",
        GOOD_BOOT,
        "wrong_kiosk",
        "a valid boot of SZ-0427 on SZ-0428's topic",
    ),
    (
        "wrong_kiosk_integer_id",
        "up",
        f"{UP}/up/boot",
        env(BOOT, {}, kiosk=427),
        "wrong_kiosk",
        "kiosk id must be the topic's text",
    ),
    (
        "bad_seq_negative",
        "up",
        f"{UP}/up/boot",
        env(BOOT, {}, seq=-1),
        "bad_seq",
        "seq is a uint32",
    ),
    (
        "bad_seq_too_large",
        "up",
        f"{UP}/up/boot",
        env(BOOT, {}, seq=2**32),
        "bad_seq",
        "seq is a uint32",
    ),
    (
        "bad_seq_zero_on_sequenced",
        "up",
        f"{UP}/up/slot",
        env(SE, {"slot": 1, "ev": "in", "tag": tag(1)}, seq=0),
        "bad_seq",
        "seq 0 is reserved for presence",
    ),
    (
        "bad_seq_nonzero_on_presence",
        "up",
        f"{UP}/up/presence",
        env(7, {"conn": 3}, seq=7),
        "bad_seq",
        "Online/Offline carry seq 0",
    ),
    ("bad_ts_negative", "up", f"{UP}/up/boot", env(BOOT, {}, ts=-1), "bad_ts", "ts_ms is unsigned"),
    (
        "bad_ts_float",
        "up",
        f"{UP}/up/boot",
        env(BOOT, {}, ts=1.5e12),
        "bad_ts",
        "ts_ms is an integer, never a float",
    ),
    (
        "bad_ts_too_large",
        "up",
        f"{UP}/up/boot",
        env(BOOT, {}, ts=2**48 + 1),
        "bad_ts",
        "beyond 2^48 ms is garbage",
    ),
    (
        "bad_body_list",
        "up",
        f"{UP}/up/boot",
        env(BOOT, ["x", 22, 1]),
        "bad_body",
        "the body is a map",
    ),
    ("bad_body_null", "up", f"{UP}/up/hb", env(HB, None), "bad_body", "the body is a map"),
    (
        "missing_field_heartbeat_slots",
        "up",
        f"{UP}/up/hb",
        env(HB, {"sig": -70}),
        "missing_field",
        "slots is required",
    ),
    (
        "missing_field_boot_fw",
        "up",
        f"{UP}/up/boot",
        env(BOOT, {"n": 22, "conn": 1}),
        "missing_field",
        "fw is required",
    ),
    (
        "missing_field_slot_event_tag",
        "up",
        f"{UP}/up/slot",
        env(SE, {"slot": 1, "ev": "out"}),
        "missing_field",
        "tag is required (it may be null on out)",
    ),
    (
        "missing_field_unlock_slot",
        "down",
        f"{UP}/down/cmd",
        env(CMD, {"cmd": "c-1", "op": "unlock", "exp": TS}),
        "missing_field",
        "unlock needs a slot",
    ),
    (
        "missing_field_config_hb",
        "down",
        f"{UP}/down/config",
        env(CFG, {"cmd": "c-1", "unlock": 30}),
        "missing_field",
        "hb is required",
    ),
    (
        "bad_field_signal_positive",
        "up",
        f"{UP}/up/hb",
        env(HB, {"sig": 5, "slots": SLOTS_OK}),
        "bad_field",
        "sig is -150..0 dBm",
    ),
    (
        "bad_field_slot_zero",
        "up",
        f"{UP}/up/slot",
        env(SE, {"slot": 0, "ev": "in", "tag": tag(1)}),
        "bad_field",
        "slots are numbered from 1",
    ),
    (
        "bad_field_slot_65",
        "up",
        f"{UP}/up/slot",
        env(SE, {"slot": 65, "ev": "in", "tag": tag(1)}),
        "bad_field",
        "at most 64 slots",
    ),
    (
        "bad_field_event_kind",
        "up",
        f"{UP}/up/slot",
        env(SE, {"slot": 1, "ev": "sideways", "tag": tag(1)}),
        "bad_field",
        "ev is in or out",
    ),
    (
        "bad_field_inserted_without_tag",
        "up",
        f"{UP}/up/slot",
        env(SE, {"slot": 1, "ev": "in", "tag": None}),
        "bad_field",
        "an inserted umbrella must carry its tag",
    ),
    (
        "bad_field_result_status",
        "up",
        f"{UP}/up/result",
        env(4, {"cmd": "c-1", "res": "maybe"}),
        "bad_field",
        "unknown result code",
    ),
    (
        "bad_field_empty_cmd_id",
        "up",
        f"{UP}/up/result",
        env(4, {"cmd": "", "res": "ok"}),
        "bad_field",
        "command ids are 1..64 characters",
    ),
    (
        "bad_field_firmware_too_long",
        "up",
        f"{UP}/up/boot",
        env(BOOT, {"fw": "v" * 65, "n": 22, "conn": 1}),
        "bad_field",
        "fw is 1..64 characters",
    ),
    (
        "bad_field_fault_on_integer",
        "up",
        f"{UP}/up/fault",
        env(6, {"code": 1, "on": 1}),
        "bad_field",
        "on is a CBOR bool, not 1",
    ),
    (
        "bad_field_play_id_15_bytes",
        "up",
        f"{UP}/up/play",
        env(5, {"id": bytes(15), "cr": "cr-1", "at": TS, "ms": 10_000, "plv": 1}),
        "bad_field",
        "play ids are exactly 16 bytes",
    ),
    (
        "bad_field_config_heartbeat_1s",
        "down",
        f"{UP}/down/config",
        env(CFG, {"cmd": "c-1", "hb": 1, "unlock": 30}),
        "bad_field",
        "hb is 5..3600 s",
    ),
    (
        "bad_field_playlist_overlapping_blocks",
        "down",
        f"{UP}/down/playlist",
        env(PL, {"cmd": "pl-1", "ver": 1, "blocks": _blocks((TS, TS + 100), (TS + 50, TS + 200))}),
        "bad_field",
        "blocks are sorted and disjoint",
    ),
    (
        "bad_field_playlist_block_ends_before_start",
        "down",
        f"{UP}/down/playlist",
        env(PL, {"cmd": "pl-1", "ver": 1, "blocks": _blocks((TS + 100, TS))}),
        "bad_field",
        "end_ms > start_ms",
    ),
    (
        "bad_tag_three_bytes",
        "up",
        f"{UP}/up/slot",
        env(SE, {"slot": 1, "ev": "in", "tag": b"\x01\x02\x03"}),
        "bad_tag",
        "tags are 4..16 bytes",
    ),
    (
        "bad_tag_hex_text",
        "up",
        f"{UP}/up/slot",
        env(SE, {"slot": 1, "ev": "in", "tag": tag(1).hex()}),
        "bad_tag",
        "a tag is a byte string, never hex text",
    ),
    (
        "bad_tag_in_heartbeat_17_bytes",
        "up",
        f"{UP}/up/hb",
        env(HB, {"sig": -70, "slots": [bytes(17)]}),
        "bad_tag",
        "tags are 4..16 bytes",
    ),
    (
        "bad_slot_state_integer",
        "up",
        f"{UP}/up/hb",
        env(HB, {"sig": -70, "slots": [5]}),
        "bad_slot_state",
        "a slot is null, a byte string or [fault, tag|null]",
    ),
    (
        "bad_slot_state_hex_text",
        "up",
        f"{UP}/up/hb",
        env(HB, {"sig": -70, "slots": [tag(1).hex()]}),
        "bad_slot_state",
        "a slot tag is a byte string, never hex text",
    ),
    (
        "bad_slot_state_fault_300",
        "up",
        f"{UP}/up/hb",
        env(HB, {"sig": -70, "slots": [[300, None]]}),
        "bad_slot_state",
        "fault codes are 0..255",
    ),
    (
        "bad_slot_state_one_item_fault",
        "up",
        f"{UP}/up/hb",
        env(HB, {"sig": -70, "slots": [[1]]}),
        "bad_slot_state",
        "a fault is exactly [code, tag|null]",
    ),
]


def build_valid() -> dict[str, list[dict[str, Any]]]:
    files: dict[str, list[dict[str, Any]]] = {}
    for file, entries in VALID.items():
        files[file] = []
        for name, note, msg in entries:
            payload = encode(msg)
            files[file].append(
                {
                    "name": name,
                    "note": note,
                    "direction": "up" if msg_type(msg) < 64 else "down",
                    "topic": topic_for(msg),
                    "hex": payload.hex(),
                    "diag": golden.diagnostic(cbor2.loads(payload)),
                    "message": golden.message_to_dict(msg),
                }
            )
    return files


def build_invalid() -> list[dict[str, Any]]:
    return [
        {"name": n, "note": note, "direction": d, "topic": t, "hex": p.hex(), "reason": r}
        for n, d, t, p, r, note in INVALID
    ]


def write(directory: Path = golden.VECTORS_DIR) -> list[Path]:
    directory.mkdir(exist_ok=True)
    written = []
    docs: dict[str, Any] = {
        name: {"format": golden.FORMAT, "vectors": vectors}
        for name, vectors in build_valid().items()
    }
    docs["invalid"] = {"format": golden.FORMAT, "vectors": build_invalid()}
    for name, doc in docs.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


# ---------------------------------------------------------------- cellular data (SPEC §11)

HEARTBEATS_PER_MONTH = 43_200  # one a minute, 30 days
IP_TCP_HEADER = 52  # IPv4 20 + TCP 20 + timestamps option 12
PACKETS_PER_HEARTBEAT = 3  # PUBLISH; PUBACK (carries the ACK of PUBLISH); pure ACK of PUBACK
PUBACK = 4  # fixed header 2 + packet id 2
PING_PAIR = 2 + 2  # PINGREQ + PINGRESP, 2 bytes each
TLS_RECORD = 29  # TLS 1.2 AES-GCM: 5 header + 8 explicit nonce + 16 tag


def json_equivalent(msg: Heartbeat) -> bytes:
    """The same envelope and keys in compact JSON, tags as hex text."""

    def slot(s: SlotState) -> Any:
        hex_tag = None if s.tag is None else s.tag.hex()
        return hex_tag if s.fault is None else [s.fault, hex_tag]

    body: dict[str, Any] = {"sig": msg.signal_dbm, "slots": [slot(s) for s in msg.slots]}
    if msg.playlist_version is not None:
        body["plv"] = msg.playlist_version
    envelope = [1, int(MsgType.HEARTBEAT), msg.kiosk_id, msg.seq, msg.ts_ms, body]
    return json.dumps(envelope, separators=(",", ":")).encode()


def mqtt_publish_size(topic: str, payload_len: int) -> int:
    """MQTT 3.1.1 §3.3: fixed header (1 + varint remaining length) + topic + packet id."""
    remaining = 2 + len(topic.encode()) + 2 + payload_len
    varint = 1 if remaining < 128 else 2 if remaining < 16_384 else 3
    return 1 + varint + remaining


@dataclass(frozen=True)
class Airtime:
    payload: int
    publish: int
    per_heartbeat: int
    month: int
    month_tls: int


def airtime(topic: str, payload_len: int) -> Airtime:
    publish = mqtt_publish_size(topic, payload_len)
    per = publish + PUBACK + PACKETS_PER_HEARTBEAT * IP_TCP_HEADER
    return Airtime(
        payload_len,
        publish,
        per,
        per * HEARTBEATS_PER_MONTH,
        (per + 2 * TLS_RECORD) * HEARTBEATS_PER_MONTH,
    )


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.2f} MB"


def cellular_table(hb: Heartbeat = FULL_HEARTBEAT) -> str:
    topic = topic_for(hb)
    c = airtime(topic, len(encode(hb)))
    j = airtime(topic, len(json_equivalent(hb)))
    ping = (PING_PAIR + PACKETS_PER_HEARTBEAT * IP_TCP_HEADER) * HEARTBEATS_PER_MONTH
    rows = [
        ("Heartbeat payload (bytes)", str(c.payload), str(j.payload)),
        (
            f"MQTT PUBLISH QoS 1: fixed header + topic `{topic}` + packet id + payload",
            str(c.publish),
            str(j.publish),
        ),
        ("MQTT PUBACK", str(PUBACK), str(PUBACK)),
        (
            f"IPv4 + TCP headers, {PACKETS_PER_HEARTBEAT} packets × {IP_TCP_HEADER}",
            str(PACKETS_PER_HEARTBEAT * IP_TCP_HEADER),
            str(PACKETS_PER_HEARTBEAT * IP_TCP_HEADER),
        ),
        (
            "**Per heartbeat on the air (bytes)**",
            f"**{c.per_heartbeat}**",
            f"**{j.per_heartbeat}**",
        ),
        (
            f"**Per month, {HEARTBEATS_PER_MONTH:,} heartbeats**",
            f"**{_mb(c.month)}**",
            f"**{_mb(j.month)}**",
        ),
        (f"Per month with TLS 1.2 (+2 records × {TLS_RECORD})", _mb(c.month_tls), _mb(j.month_tls)),
        ("MQTT PINGREQ/PINGRESP avoided per month", _mb(ping), _mb(ping)),
    ]
    lines = [
        f"Heartbeat payload size: CBOR {c.payload} bytes, JSON {j.payload} bytes.",
        "",
        "| | CBOR | JSON (hex tags) |",
        "|---|---:|---:|",
        *(f"| {a} | {b} | {c_} |" for a, b, c_ in rows),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if "--table" in argv:
        print(cellular_table())
        return
    for path in write():
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
