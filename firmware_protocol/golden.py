"""Golden vectors: wire bytes <-> decoded message, shared with the C firmware's tests.

The JSON layout is documented in SPEC.md §10. Bytes inside decoded messages are lowercase
hex strings, enums are their wire strings, and every field uses the name it has in
`messages.py`, so a C test can walk the same files without any Python.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_protocol.messages import (
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

VECTORS_DIR = Path(__file__).parent / "vectors"
FORMAT = 1

CLASSES: dict[MsgType, type[Any]] = {
    MsgType.BOOT: Boot,
    MsgType.HEARTBEAT: Heartbeat,
    MsgType.SLOT_EVENT: SlotEvent,
    MsgType.CMD_RESULT: CmdResult,
    MsgType.PLAY: Play,
    MsgType.FAULT: Fault,
    MsgType.ONLINE: Online,
    MsgType.OFFLINE: Offline,
    MsgType.COMMAND: Command,
    MsgType.PLAYLIST: Playlist,
    MsgType.CONFIG: Config,
}
_TYPE_OF_CLASS = {cls: t for t, cls in CLASSES.items()}

_BYTES_FIELDS = frozenset({"tag", "play_id", "sha256"})
_ENUM_FIELDS: dict[str, type[Any]] = {
    "kind": SlotEventKind,
    "status": CmdStatus,
    "op": CmdOp,
}


@dataclass(frozen=True, slots=True)
class Vector:
    """A valid message: `payload` on `topic` decodes to `message`, which encodes to it."""

    file: str
    name: str
    direction: str  # "up" | "down"
    topic: str
    payload: bytes
    message: dict[str, Any]
    diag: str


@dataclass(frozen=True, slots=True)
class InvalidVector:
    """A payload the decoder for `direction` must reject with DecodeError(`reason`)."""

    name: str
    direction: str
    topic: str
    payload: bytes
    reason: str
    note: str


def type_name(t: MsgType) -> str:
    return t.name.lower()


def message_to_dict(msg: Message) -> dict[str, Any]:
    """The JSON-able form of a message, as stored under "message" in a vector."""
    out: dict[str, Any] = {"type": type_name(_TYPE_OF_CLASS[type(msg)])}
    for f in dataclasses.fields(msg):
        out[f.name] = _to_json(f.name, getattr(msg, f.name))
    return out


def _to_json(name: str, value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, SlotState):
        return {"tag": _to_json("tag", value.tag), "fault": value.fault}
    if isinstance(value, PlaylistBlock):
        return {
            "start_ms": value.start_ms,
            "end_ms": value.end_ms,
            "spots": [_to_json("spot", s) for s in value.spots],
        }
    if isinstance(value, PlaylistSpot):
        return {f.name: _to_json(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_to_json(name, v) for v in value]
    if name in _ENUM_FIELDS and value is not None:
        return str(value.value)
    return value


def message_from_dict(d: dict[str, Any]) -> Message:
    """Inverse of `message_to_dict`: the message object a vector's "message" stands for."""
    cls = CLASSES[MsgType[d["type"].upper()]]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            kwargs[f.name] = _from_json(f.name, d[f.name])
    msg: Message = cls(**kwargs)
    return msg


def _unhex(v: Any) -> bytes | None:
    return None if v is None else bytes.fromhex(v)


def _from_json(name: str, value: Any) -> Any:
    if name in _BYTES_FIELDS:
        return _unhex(value)
    if name in _ENUM_FIELDS:
        return None if value is None else _ENUM_FIELDS[name](value)
    if name == "slots":
        return tuple(SlotState(tag=_unhex(s["tag"]), fault=s["fault"]) for s in value)
    if name == "blocks":
        return tuple(
            PlaylistBlock(
                b["start_ms"],
                b["end_ms"],
                tuple(
                    PlaylistSpot(
                        s["creative_id"],
                        s["duration_ms"],
                        s["media_url"],
                        bytes.fromhex(s["sha256"]),
                    )
                    for s in b["spots"]
                ),
            )
            for b in value
        )
    return value


def load_vectors(directory: Path = VECTORS_DIR) -> list[Vector]:
    """Every valid vector from every `*.json` file except invalid.json, in file order."""
    out: list[Vector] = []
    for path in sorted(directory.glob("*.json")):
        if path.name == "invalid.json":
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        for v in doc["vectors"]:
            out.append(
                Vector(
                    file=path.name,
                    name=v["name"],
                    direction=v["direction"],
                    topic=v["topic"],
                    payload=bytes.fromhex(v["hex"]),
                    message=v["message"],
                    diag=v["diag"],
                )
            )
    return out


def load_invalid(directory: Path = VECTORS_DIR) -> list[InvalidVector]:
    doc = json.loads((directory / "invalid.json").read_text(encoding="utf-8"))
    return [
        InvalidVector(
            name=v["name"],
            direction=v["direction"],
            topic=v["topic"],
            payload=bytes.fromhex(v["hex"]),
            reason=v["reason"],
            note=v["note"],
        )
        for v in doc["vectors"]
    ]


def vector(name: str, directory: Path = VECTORS_DIR) -> Vector:
    for v in load_vectors(directory):
        if v.name == name:
            return v
    raise KeyError(name)


def diagnostic(value: Any) -> str:
    """RFC 8949 §8 diagnostic notation of a decoded CBOR value (the subset we use)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return f"h'{value.hex()}'"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(diagnostic(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{diagnostic(k)}: {diagnostic(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no diagnostic notation for {type(value).__name__}")
