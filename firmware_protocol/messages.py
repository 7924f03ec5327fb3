"""Decoded kiosk messages: frozen, typed, and free of any wire detail.

Every message knows its kiosk, its application sequence number and the kiosk's own clock
reading (`ts_ms`, milliseconds since the Unix epoch, as the kiosk saw it). See SPEC.md §4.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class MsgType(IntEnum):
    """Wire codes of message types (SPEC.md §4.1). Uplink < 64 <= downlink."""

    BOOT = 1
    HEARTBEAT = 2
    SLOT_EVENT = 3
    CMD_RESULT = 4
    PLAY = 5
    FAULT = 6
    ONLINE = 7
    OFFLINE = 8
    COMMAND = 64
    PLAYLIST = 65
    CONFIG = 66


UPLINK_TYPES = frozenset(t for t in MsgType if t < 64)
DOWNLINK_TYPES = frozenset(t for t in MsgType if t >= 64)


class SlotEventKind(StrEnum):
    INSERTED = "in"
    REMOVED = "out"


class CmdOp(StrEnum):
    UNLOCK = "unlock"
    PING = "ping"


class CmdStatus(StrEnum):
    """What a kiosk answers to a downlink (SPEC.md §4.3)."""

    OK = "ok"  # ping answered, playlist/config applied
    TAKEN = "taken"  # unlock: the umbrella left the slot
    NOT_TAKEN = "not_taken"  # unlock: nobody took it; the slot re-locked
    JAMMED = "jammed"  # unlock: the lock did not open
    EMPTY = "empty"  # unlock: no umbrella in that slot
    EXPIRED = "expired"  # arrived after its expiry; not executed
    BAD_SLOT = "bad_slot"  # no such slot
    REJECTED = "rejected"  # malformed or unsupported


@dataclass(frozen=True, slots=True)
class SlotState:
    """One slot in a heartbeat snapshot: empty (no tag, no fault), an umbrella, or a fault.

    A faulty slot may still hold an umbrella (a jam), so a fault keeps its tag.
    """

    tag: bytes | None = None
    fault: int | None = None

    @property
    def is_empty(self) -> bool:
        return self.tag is None and self.fault is None


EMPTY_SLOT = SlotState()


@dataclass(frozen=True, slots=True)
class Boot:
    kiosk_id: str
    seq: int
    ts_ms: int
    firmware: str
    slot_count: int
    conn: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    kiosk_id: str
    seq: int
    ts_ms: int
    signal_dbm: int
    slots: tuple[SlotState, ...]
    playlist_version: int | None = None


@dataclass(frozen=True, slots=True)
class SlotEvent:
    kiosk_id: str
    seq: int
    ts_ms: int
    slot: int
    kind: SlotEventKind
    tag: bytes | None
    cmd_id: str | None = None


@dataclass(frozen=True, slots=True)
class CmdResult:
    kiosk_id: str
    seq: int
    ts_ms: int
    cmd_id: str
    status: CmdStatus
    slot: int | None = None
    tag: bytes | None = None


@dataclass(frozen=True, slots=True)
class Play:
    kiosk_id: str
    seq: int
    ts_ms: int
    play_id: bytes
    creative_id: str
    started_ms: int
    duration_ms: int
    playlist_version: int


@dataclass(frozen=True, slots=True)
class Fault:
    kiosk_id: str
    seq: int
    ts_ms: int
    code: int
    active: bool
    slot: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Online:
    """Published by the kiosk right after CONNACK. Not sequenced: `conn` orders presence."""

    kiosk_id: str
    seq: int
    ts_ms: int
    conn: int


@dataclass(frozen=True, slots=True)
class Offline:
    """The Last Will, registered at CONNECT with the same `conn` as the Online after it."""

    kiosk_id: str
    seq: int
    ts_ms: int
    conn: int


@dataclass(frozen=True, slots=True)
class Command:
    kiosk_id: str
    seq: int
    ts_ms: int
    cmd_id: str
    op: CmdOp
    expires_ms: int
    slot: int | None = None


@dataclass(frozen=True, slots=True)
class PlaylistSpot:
    creative_id: str
    duration_ms: int
    media_url: str
    sha256: bytes


@dataclass(frozen=True, slots=True)
class PlaylistBlock:
    """From `start_ms` to `end_ms` (UTC, ms) the screen loops over `spots` in order."""

    start_ms: int
    end_ms: int
    spots: tuple[PlaylistSpot, ...]


@dataclass(frozen=True, slots=True)
class Playlist:
    kiosk_id: str
    seq: int
    ts_ms: int
    cmd_id: str
    version: int
    blocks: tuple[PlaylistBlock, ...]


@dataclass(frozen=True, slots=True)
class Config:
    kiosk_id: str
    seq: int
    ts_ms: int
    cmd_id: str
    heartbeat_s: int
    unlock_window_s: int


UplinkMessage = Boot | Heartbeat | SlotEvent | CmdResult | Play | Fault | Online | Offline
DownlinkMessage = Command | Playlist | Config
Message = UplinkMessage | DownlinkMessage

SEQUENCED_UPLINKS: tuple[type[UplinkMessage], ...] = (
    Boot,
    Heartbeat,
    SlotEvent,
    CmdResult,
    Play,
    Fault,
)
