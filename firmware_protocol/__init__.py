"""The kiosk <-> cloud contract: topics, messages, the CBOR codec and golden vectors.

Imports nothing from `server` or `device_sim`; both import it. SPEC.md is the document
firmware engineers implement from.
"""

from firmware_protocol.codec import (
    MAX_DOWNLINK_BYTES,
    MAX_UPLINK_BYTES,
    PROTOCOL_VERSION,
    DecodeError,
    decode_downlink,
    decode_uplink,
    encode,
    msg_type,
    topic_for,
)
from firmware_protocol.messages import *  # noqa: F403

__all__ = [
    "MAX_DOWNLINK_BYTES",
    "MAX_UPLINK_BYTES",
    "PROTOCOL_VERSION",
    "DecodeError",
    "decode_downlink",
    "decode_uplink",
    "encode",
    "msg_type",
    "topic_for",
]
