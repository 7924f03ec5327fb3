"""Topic layout (SPEC.md §3).

    umb/1/<kiosk_id>/up/<name>     kiosk -> cloud
    umb/1/<kiosk_id>/down/<name>   cloud -> kiosk

The kiosk id is the MQTT username and client id, so a broker ACL pattern
(`umb/1/%u/up/#` write, `umb/1/%u/down/#` read) pins a kiosk to its own topics.
"""

from __future__ import annotations

import re

from firmware_protocol.messages import MsgType

ROOT = "umb/1"
# \Z, not $: "$" would also accept a trailing newline.
KIOSK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")

TOPIC_NAMES: dict[MsgType, str] = {
    MsgType.BOOT: "boot",
    MsgType.HEARTBEAT: "hb",
    MsgType.SLOT_EVENT: "slot",
    MsgType.CMD_RESULT: "result",
    MsgType.PLAY: "play",
    MsgType.FAULT: "fault",
    MsgType.ONLINE: "presence",
    MsgType.OFFLINE: "presence",
    MsgType.COMMAND: "cmd",
    MsgType.PLAYLIST: "playlist",
    MsgType.CONFIG: "config",
}

UPLINK_NAMES = frozenset(TOPIC_NAMES[t] for t in MsgType if t < 64)
DOWNLINK_NAMES = frozenset(TOPIC_NAMES[t] for t in MsgType if t >= 64)

#: What the bridges subscribe to (as `$share/<group>/` + this on a shared subscription).
UPLINK_FILTER = f"{ROOT}/+/up/+"


def uplink(kiosk_id: str, msg_type: MsgType) -> str:
    return f"{ROOT}/{kiosk_id}/up/{TOPIC_NAMES[msg_type]}"


def downlink(kiosk_id: str, msg_type: MsgType) -> str:
    return f"{ROOT}/{kiosk_id}/down/{TOPIC_NAMES[msg_type]}"


def downlink_filter(kiosk_id: str) -> str:
    return f"{ROOT}/{kiosk_id}/down/+"


def shared(filter_: str, group: str) -> str:
    return f"$share/{group}/{filter_}"


def parse(topic: str) -> tuple[str, str, str] | None:
    """Split a topic into (kiosk_id, direction, name), or None if it is not ours."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT:
        return None
    kiosk_id, direction, name = parts[2], parts[3], parts[4]
    if not KIOSK_ID_RE.match(kiosk_id):
        return None
    if direction == "up" and name in UPLINK_NAMES:
        return kiosk_id, direction, name
    if direction == "down" and name in DOWNLINK_NAMES:
        return kiosk_id, direction, name
    return None
