"""CBOR wire codec (SPEC.md §4): the only code that turns messages into bytes and back.

Decoding never trusts the wire. Anything that is not exactly a valid message for the
topic it arrived on raises `DecodeError` with a short machine-readable `reason`; no
other exception escapes `decode_uplink` / `decode_downlink`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, TypeVar

import cbor2

from firmware_protocol import topics
from firmware_protocol.messages import (
    Boot,
    CmdOp,
    CmdResult,
    CmdStatus,
    Command,
    Config,
    DownlinkMessage,
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
    UplinkMessage,
)

PROTOCOL_VERSION = 1
MAX_UPLINK_BYTES = 2048
MAX_DOWNLINK_BYTES = 65536
MAX_SLOTS = 64
MAX_SEQ = 2**32 - 1
MAX_TS_MS = 2**48  # year 10889: any larger clock reading is garbage
TAG_MIN_BYTES, TAG_MAX_BYTES = 4, 16
PLAY_ID_BYTES = 16
MAX_TEXT = 64


class DecodeError(Exception):
    """A payload that is not a valid message. `reason` is a stable code for counters/logs."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------- encoding


def _slot_to_wire(s: SlotState) -> Any:
    if s.fault is not None:
        return [s.fault, s.tag]
    return s.tag  # bytes, or None for empty


def _body(msg: Message) -> dict[str, Any]:
    match msg:
        case Boot():
            return {"fw": msg.firmware, "n": msg.slot_count, "conn": msg.conn}
        case Heartbeat():
            body: dict[str, Any] = {
                "sig": msg.signal_dbm,
                "slots": [_slot_to_wire(s) for s in msg.slots],
            }
            if msg.playlist_version is not None:
                body["plv"] = msg.playlist_version
            return body
        case SlotEvent():
            body = {"slot": msg.slot, "ev": msg.kind.value, "tag": msg.tag}
            if msg.cmd_id is not None:
                body["cmd"] = msg.cmd_id
            return body
        case CmdResult():
            body = {"cmd": msg.cmd_id, "res": msg.status.value}
            if msg.slot is not None:
                body["slot"] = msg.slot
            if msg.tag is not None:
                body["tag"] = msg.tag
            return body
        case Play():
            return {
                "id": msg.play_id,
                "cr": msg.creative_id,
                "at": msg.started_ms,
                "ms": msg.duration_ms,
                "plv": msg.playlist_version,
            }
        case Fault():
            body = {"code": msg.code, "on": msg.active}
            if msg.slot is not None:
                body["slot"] = msg.slot
            if msg.detail:
                body["msg"] = msg.detail
            return body
        case Online() | Offline():
            return {"conn": msg.conn}
        case Command():
            body = {"cmd": msg.cmd_id, "op": msg.op.value, "exp": msg.expires_ms}
            if msg.slot is not None:
                body["slot"] = msg.slot
            return body
        case Playlist():
            return {
                "cmd": msg.cmd_id,
                "ver": msg.version,
                "blocks": [
                    [
                        b.start_ms,
                        b.end_ms,
                        [[s.creative_id, s.duration_ms, s.media_url, s.sha256] for s in b.spots],
                    ]
                    for b in msg.blocks
                ],
            }
        case Config():
            return {"cmd": msg.cmd_id, "hb": msg.heartbeat_s, "unlock": msg.unlock_window_s}
    raise TypeError(f"not a protocol message: {type(msg).__name__}")


_TYPE_OF: dict[type[Any], MsgType] = {
    Boot: MsgType.BOOT,
    Heartbeat: MsgType.HEARTBEAT,
    SlotEvent: MsgType.SLOT_EVENT,
    CmdResult: MsgType.CMD_RESULT,
    Play: MsgType.PLAY,
    Fault: MsgType.FAULT,
    Online: MsgType.ONLINE,
    Offline: MsgType.OFFLINE,
    Command: MsgType.COMMAND,
    Playlist: MsgType.PLAYLIST,
    Config: MsgType.CONFIG,
}


def msg_type(msg: Message) -> MsgType:
    return _TYPE_OF[type(msg)]


def encode(msg: Message) -> bytes:
    """Envelope: CBOR array [version, type, kiosk_id, seq, ts_ms, body]."""
    return cbor2.dumps(
        [PROTOCOL_VERSION, int(msg_type(msg)), msg.kiosk_id, msg.seq, msg.ts_ms, _body(msg)]
    )


def topic_for(msg: Message) -> str:
    t = msg_type(msg)
    return topics.uplink(msg.kiosk_id, t) if t < 64 else topics.downlink(msg.kiosk_id, t)


# ---------------------------------------------------------------- decoding helpers

T = TypeVar("T")


def _field(
    body: dict[Any, Any], key: str, check: Callable[[Any], T], *, optional: bool = False
) -> T:
    if key not in body:
        if optional:
            return None  # type: ignore[return-value]
        raise DecodeError("missing_field", key)
    value = body[key]
    if optional and value is None:
        return None  # type: ignore[return-value]
    try:
        return check(value)
    except DecodeError as e:
        raise DecodeError(e.reason, f"{key}: {e.detail}") from None


def _uint(limit: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if type(v) is not int or not 0 <= v <= limit:
            raise DecodeError("bad_field", f"expected integer 0..{limit}, got {v!r:.40}")
        return v

    return check


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if type(v) is not int or not lo <= v <= hi:
            raise DecodeError("bad_field", f"expected integer {lo}..{hi}, got {v!r:.40}")
        return v

    return check


def _text(v: Any) -> str:
    if type(v) is not str or not 0 < len(v) <= MAX_TEXT:
        raise DecodeError("bad_field", f"expected text of 1..{MAX_TEXT} chars, got {v!r:.40}")
    return v


def _long_text(v: Any) -> str:
    if type(v) is not str or len(v) > 1024:
        raise DecodeError("bad_field", "expected text of at most 1024 chars")
    return v


def _tag(v: Any) -> bytes:
    if type(v) is not bytes or not TAG_MIN_BYTES <= len(v) <= TAG_MAX_BYTES:
        raise DecodeError("bad_tag", f"expected {TAG_MIN_BYTES}..{TAG_MAX_BYTES} bytes")
    return v


def _opt_tag(v: Any) -> bytes | None:
    return None if v is None else _tag(v)


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise DecodeError("bad_field", f"expected bool, got {v!r:.40}")
    return v


def _enum(enum: type[Any]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        try:
            return enum(v)
        except (ValueError, TypeError):
            raise DecodeError("bad_field", f"unknown value {v!r:.40}") from None

    return check


def _bytes_len(n: int) -> Callable[[Any], bytes]:
    def check(v: Any) -> bytes:
        if type(v) is not bytes or len(v) != n:
            raise DecodeError("bad_field", f"expected {n} bytes")
        return v

    return check


_slot_no = _int_range(1, MAX_SLOTS)
_u8 = _uint(255)
_u32 = _uint(MAX_SEQ)
_ts = _uint(MAX_TS_MS)
_fw = _text
_cmd_id = _text


def _slot_state(v: Any) -> SlotState:
    # SPEC.md §4.4: null = empty, bstr = umbrella tag, [fault_code, tag|null] = fault.
    if v is None:
        return SlotState()
    if type(v) is bytes:
        return SlotState(tag=_tag(v))
    if type(v) is list and len(v) == 2 and type(v[0]) is int and 0 <= v[0] <= 255:
        return SlotState(tag=_opt_tag(v[1]), fault=v[0])
    raise DecodeError("bad_slot_state", f"{v!r:.40}")


def _slots(v: Any) -> tuple[SlotState, ...]:
    if type(v) is not list or not 1 <= len(v) <= MAX_SLOTS:
        raise DecodeError("bad_field", f"expected 1..{MAX_SLOTS} slots")
    return tuple(_slot_state(s) for s in v)


def _spot(v: Any) -> PlaylistSpot:
    if type(v) is not list or len(v) != 4:
        raise DecodeError("bad_field", "spot must be [creative, ms, url, sha256]")
    return PlaylistSpot(
        _text(v[0]), _int_range(1, 3_600_000)(v[1]), _long_text(v[2]), _bytes_len(32)(v[3])
    )


def _blocks(v: Any) -> tuple[PlaylistBlock, ...]:
    if type(v) is not list or len(v) > 4096:
        raise DecodeError("bad_field", "blocks must be a list of at most 4096")
    out: list[PlaylistBlock] = []
    for b in v:
        if type(b) is not list or len(b) != 3 or type(b[2]) is not list or len(b[2]) > 360:
            raise DecodeError("bad_field", "block must be [start, end, [spots]]")
        start, end = _ts(b[0]), _ts(b[1])
        if end <= start:
            raise DecodeError("bad_field", "block ends before it starts")
        # SPEC.md §4.6: sorted and disjoint, so a kiosk finds "now" with one scan.
        if out and start < out[-1].end_ms:
            raise DecodeError("bad_field", "blocks must be sorted and must not overlap")
        out.append(PlaylistBlock(start, end, tuple(_spot(s) for s in b[2])))
    return tuple(out)


def _decode_body(t: MsgType, k: str, seq: int, ts: int, b: dict[Any, Any]) -> Message:
    match t:
        case MsgType.BOOT:
            return Boot(
                k,
                seq,
                ts,
                _field(b, "fw", _fw),
                _field(b, "n", _int_range(1, MAX_SLOTS)),
                _field(b, "conn", _u32),
            )
        case MsgType.HEARTBEAT:
            return Heartbeat(
                k,
                seq,
                ts,
                _field(b, "sig", _int_range(-150, 0)),
                _field(b, "slots", _slots),
                _field(b, "plv", _u32, optional=True),
            )
        case MsgType.SLOT_EVENT:
            kind = _field(b, "ev", _enum(SlotEventKind))
            tag = _field(b, "tag", _opt_tag)
            if kind is SlotEventKind.INSERTED and tag is None:
                raise DecodeError("bad_field", "tag: an inserted umbrella must carry its tag")
            return SlotEvent(
                k,
                seq,
                ts,
                _field(b, "slot", _slot_no),
                kind,
                tag,
                _field(b, "cmd", _cmd_id, optional=True),
            )
        case MsgType.CMD_RESULT:
            return CmdResult(
                k,
                seq,
                ts,
                _field(b, "cmd", _cmd_id),
                _field(b, "res", _enum(CmdStatus)),
                _field(b, "slot", _slot_no, optional=True),
                _field(b, "tag", _opt_tag, optional=True),
            )
        case MsgType.PLAY:
            return Play(
                k,
                seq,
                ts,
                _field(b, "id", _bytes_len(PLAY_ID_BYTES)),
                _field(b, "cr", _text),
                _field(b, "at", _ts),
                _field(b, "ms", _uint(3_600_000)),
                _field(b, "plv", _u32),
            )
        case MsgType.FAULT:
            return Fault(
                k,
                seq,
                ts,
                _field(b, "code", _u8),
                _field(b, "on", _bool),
                _field(b, "slot", _slot_no, optional=True),
                _field(b, "msg", _long_text, optional=True) or "",
            )
        case MsgType.ONLINE:
            return Online(k, seq, ts, _field(b, "conn", _u32))
        case MsgType.OFFLINE:
            return Offline(k, seq, ts, _field(b, "conn", _u32))
        case MsgType.COMMAND:
            op = _field(b, "op", _enum(CmdOp))
            slot = _field(b, "slot", _slot_no, optional=True)
            if op is CmdOp.UNLOCK and slot is None:
                raise DecodeError("missing_field", "slot")
            return Command(k, seq, ts, _field(b, "cmd", _cmd_id), op, _field(b, "exp", _ts), slot)
        case MsgType.PLAYLIST:
            return Playlist(
                k,
                seq,
                ts,
                _field(b, "cmd", _cmd_id),
                _field(b, "ver", _u32),
                _field(b, "blocks", _blocks),
            )
        case MsgType.CONFIG:
            return Config(
                k,
                seq,
                ts,
                _field(b, "cmd", _cmd_id),
                _field(b, "hb", _int_range(5, 3600)),
                _field(b, "unlock", _int_range(5, 600)),
            )
    raise DecodeError("unknown_type", str(t))  # pragma: no cover - MsgType is exhaustive


_PRESENCE = frozenset({MsgType.ONLINE, MsgType.OFFLINE})
_SEQUENCED = frozenset(t for t in MsgType if t < 64) - _PRESENCE


def _decode(topic: str, payload: bytes, direction: str, limit: int) -> Message:
    if len(payload) > limit:
        raise DecodeError("oversized", f"{len(payload)} > {limit} bytes")
    where = topics.parse(topic)
    if where is None or where[1] != direction:
        raise DecodeError("bad_topic", topic[:120])
    topic_kiosk, _, name = where
    try:
        stream = io.BytesIO(payload)
        env = cbor2.CBORDecoder(stream).decode()
    except Exception as e:  # cbor2 raises several types on garbage; all mean the same here
        raise DecodeError("not_cbor", type(e).__name__) from None
    if stream.tell() != len(payload):
        # cbor2.loads would silently ignore these; a payload is exactly one data item.
        raise DecodeError("not_cbor", f"{len(payload) - stream.tell()} trailing bytes")
    if type(env) is not list or len(env) != 6:
        raise DecodeError("bad_envelope", "expected a 6-item array")
    version, type_code, kiosk_id, seq, ts, body = env
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise DecodeError("bad_version", f"{version!r:.20}")
    try:
        t = MsgType(type_code) if type(type_code) is int else None
    except ValueError:
        t = None
    if t is None:
        raise DecodeError("unknown_type", f"{type_code!r:.20}")
    if topics.TOPIC_NAMES[t] != name:
        raise DecodeError("type_topic_mismatch", f"type {t.name} on topic {name}")
    if kiosk_id != topic_kiosk:
        raise DecodeError("wrong_kiosk", f"payload {kiosk_id!r:.40} on topic of {topic_kiosk}")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise DecodeError("bad_seq", f"{seq!r:.20}")
    # SPEC.md §5: presence is ordered by `conn` and carries seq 0; 0 is never a real seq.
    if t in _PRESENCE and seq != 0:
        raise DecodeError("bad_seq", f"{t.name} must carry seq 0")
    if t in _SEQUENCED and seq == 0:
        raise DecodeError("bad_seq", f"{t.name} must carry a seq >= 1")
    if type(ts) is not int or not 0 <= ts <= MAX_TS_MS:
        raise DecodeError("bad_ts", f"{ts!r:.20}")
    if type(body) is not dict:
        raise DecodeError("bad_body", "expected a map")
    try:
        return _decode_body(t, topic_kiosk, seq, ts, body)
    except DecodeError:
        raise
    except Exception as e:  # defensive: a decoder bug must not kill a handler
        raise DecodeError("bad_body", type(e).__name__) from None


def decode_uplink(topic: str, payload: bytes) -> UplinkMessage:
    msg = _decode(topic, payload, "up", MAX_UPLINK_BYTES)
    return msg  # type: ignore[return-value]  # direction check guarantees an uplink type


def decode_downlink(topic: str, payload: bytes) -> DownlinkMessage:
    msg = _decode(topic, payload, "down", MAX_DOWNLINK_BYTES)
    return msg  # type: ignore[return-value]
