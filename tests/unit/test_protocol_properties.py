"""Property tests of the codec: valid messages round-trip, and no input escapes DecodeError."""

from __future__ import annotations

import itertools
from typing import Any

import cbor2
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from firmware_protocol import golden, topics
from firmware_protocol.codec import (
    MAX_DOWNLINK_BYTES,
    MAX_SEQ,
    MAX_TS_MS,
    MAX_UPLINK_BYTES,
    DecodeError,
    decode_downlink,
    decode_uplink,
    encode,
    msg_type,
    topic_for,
)
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

kiosk_ids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
seqs = st.integers(1, MAX_SEQ)
u32 = st.integers(0, MAX_SEQ)
ts = st.integers(0, MAX_TS_MS)
slot_nos = st.integers(1, 64)
tags = st.binary(min_size=4, max_size=16)
texts = st.text(min_size=1, max_size=64)
long_texts = st.text(max_size=200)
slot_states = st.one_of(
    st.just(SlotState()),
    st.builds(SlotState, tag=tags),
    st.builds(SlotState, tag=st.none() | tags, fault=st.integers(0, 255)),
)


@st.composite
def blocks(draw: st.DrawFn) -> tuple[PlaylistBlock, ...]:
    cuts = sorted(draw(st.sets(st.integers(0, MAX_TS_MS), max_size=8)))
    spots = st.lists(
        st.builds(
            PlaylistSpot,
            texts,
            st.integers(1, 3_600_000),
            st.text(max_size=100),
            st.binary(min_size=32, max_size=32),
        ),
        max_size=3,
    )
    return tuple(PlaylistBlock(a, b, tuple(draw(spots))) for a, b in itertools.pairwise(cuts))


def _common(k: Any, seq: Any = seqs) -> dict[str, Any]:
    return {"kiosk_id": k, "seq": seq, "ts_ms": ts}


@st.composite
def messages(draw: st.DrawFn, kiosk: st.SearchStrategy[str] = kiosk_ids) -> Message:
    k = kiosk
    choices: list[st.SearchStrategy[Any]] = [
        st.builds(Boot, **_common(k), firmware=texts, slot_count=slot_nos, conn=u32),
        st.builds(
            Heartbeat,
            **_common(k),
            signal_dbm=st.integers(-150, 0),
            slots=st.lists(slot_states, min_size=1, max_size=64).map(tuple),
            playlist_version=st.none() | u32,
        ),
        st.builds(
            SlotEvent,
            **_common(k),
            slot=slot_nos,
            kind=st.just(SlotEventKind.INSERTED),
            tag=tags,
            cmd_id=st.none() | texts,
        ),
        st.builds(
            SlotEvent,
            **_common(k),
            slot=slot_nos,
            kind=st.just(SlotEventKind.REMOVED),
            tag=st.none() | tags,
            cmd_id=st.none() | texts,
        ),
        st.builds(
            CmdResult,
            **_common(k),
            cmd_id=texts,
            status=st.sampled_from(CmdStatus),
            slot=st.none() | slot_nos,
            tag=st.none() | tags,
        ),
        st.builds(
            Play,
            **_common(k),
            play_id=st.binary(min_size=16, max_size=16),
            creative_id=texts,
            started_ms=ts,
            duration_ms=st.integers(0, 3_600_000),
            playlist_version=u32,
        ),
        st.builds(
            Fault,
            **_common(k),
            code=st.integers(0, 255),
            active=st.booleans(),
            slot=st.none() | slot_nos,
            detail=long_texts,
        ),
        st.builds(Online, **_common(k, st.just(0)), conn=u32),
        st.builds(Offline, **_common(k, st.just(0)), conn=u32),
        st.builds(
            Command,
            **_common(k, u32),
            cmd_id=texts,
            op=st.just(CmdOp.UNLOCK),
            expires_ms=ts,
            slot=slot_nos,
        ),
        st.builds(
            Command,
            **_common(k, u32),
            cmd_id=texts,
            op=st.just(CmdOp.PING),
            expires_ms=ts,
            slot=st.none() | slot_nos,
        ),
        st.builds(Playlist, **_common(k, u32), cmd_id=texts, version=u32, blocks=blocks()),
        st.builds(
            Config,
            **_common(k, u32),
            cmd_id=texts,
            heartbeat_s=st.integers(5, 3600),
            unlock_window_s=st.integers(5, 600),
        ),
    ]
    msg: Message = draw(st.one_of(choices))
    return msg


def _decode(topic: str, payload: bytes) -> Message:
    if "/up/" in topic:
        return decode_uplink(topic, payload)
    return decode_downlink(topic, payload)


def _decodes_or_raises_decode_error(topic: str, payload: bytes) -> None:
    """The property under fuzzing: a message, or DecodeError; any other exception fails."""
    try:
        msg = _decode(topic, payload)
    except DecodeError:
        return
    assert topic_for(msg) == topic
    assert _decode(topic, encode(msg)) == msg


uplink_topics = st.builds(
    topics.uplink, st.just("SZ-0427"), st.sampled_from([t for t in MsgType if t < 64])
)
any_topics = st.builds(
    lambda t: topics.uplink("SZ-0427", t) if t < 64 else topics.downlink("SZ-0427", t),
    st.sampled_from(MsgType),
)
valid_payloads = st.sampled_from([(v.topic, v.payload) for v in golden.load_vectors()])

cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=20,
)
BODY_KEYS = [
    "fw", "n", "conn", "sig", "slots", "plv", "slot", "ev", "tag", "cmd", "res",
    "id", "cr", "at", "ms", "code", "on", "msg", "op", "exp", "ver", "blocks", "hb", "unlock",
]  # fmt: skip
near_bodies = st.dictionaries(st.sampled_from(BODY_KEYS), cbor_values, max_size=8)


@settings(deadline=None, max_examples=300)
@given(messages())
def test_any_valid_message_round_trips_through_its_topic(msg: Message) -> None:
    payload = encode(msg)
    assert _decode(topic_for(msg), payload) == msg


@settings(deadline=None)
@given(messages())
def test_any_valid_uplink_fits_the_uplink_size_limit(msg: Message) -> None:
    if msg_type(msg) < 64:
        assert len(encode(msg)) <= MAX_UPLINK_BYTES


@settings(deadline=None, max_examples=300)
@given(any_topics, st.binary(max_size=300))
def test_random_bytes_decode_or_raise_decode_error(topic: str, payload: bytes) -> None:
    _decodes_or_raises_decode_error(topic, payload)


@settings(deadline=None, max_examples=300)
@given(any_topics, cbor_values)
def test_random_cbor_values_decode_or_raise_decode_error(topic: str, value: Any) -> None:
    _decodes_or_raises_decode_error(topic, cbor2.dumps(value))


@settings(deadline=None, max_examples=500)
@given(
    any_topics,
    st.sampled_from(MsgType),
    st.one_of(seqs, cbor_values),
    st.one_of(ts, cbor_values),
    near_bodies,
)
def test_well_formed_envelopes_with_random_bodies_decode_or_raise_decode_error(
    topic: str, t: MsgType, seq: Any, ts_ms: Any, body: dict[str, Any]
) -> None:
    payload = cbor2.dumps([1, int(t), "SZ-0427", seq, ts_ms, body])
    _decodes_or_raises_decode_error(topic, payload)


@settings(deadline=None)
@given(valid_payloads, st.data())
def test_truncated_valid_payloads_decode_or_raise_decode_error(
    vector: tuple[str, bytes], data: st.DataObject
) -> None:
    topic, payload = vector
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(DecodeError) as caught:
        _decode(topic, payload[:cut])
    assert caught.value.reason == "not_cbor"


@settings(deadline=None, max_examples=500)
@given(valid_payloads, st.data())
def test_valid_payloads_with_a_flipped_bit_decode_or_raise_decode_error(
    vector: tuple[str, bytes], data: st.DataObject
) -> None:
    topic, payload = vector
    bit = data.draw(st.integers(0, len(payload) * 8 - 1))
    flipped = bytearray(payload)
    flipped[bit // 8] ^= 1 << (bit % 8)
    _decodes_or_raises_decode_error(topic, bytes(flipped))


@settings(deadline=None, max_examples=50)
@given(
    uplink_topics, st.integers(MAX_UPLINK_BYTES + 1, 3 * MAX_UPLINK_BYTES), st.binary(max_size=8)
)
def test_oversized_uplinks_are_rejected_before_parsing(topic: str, size: int, head: bytes) -> None:
    payload = (head + bytes(size))[:size]
    with pytest.raises(DecodeError) as caught:
        decode_uplink(topic, payload)
    assert caught.value.reason == "oversized"


def test_oversized_downlink_is_rejected() -> None:
    payload = cbor2.dumps(bytes(MAX_DOWNLINK_BYTES))
    with pytest.raises(DecodeError) as caught:
        decode_downlink("umb/1/SZ-0427/down/playlist", payload)
    assert caught.value.reason == "oversized"


@settings(deadline=None)
@given(st.data(), kiosk_ids, kiosk_ids)
def test_a_payload_of_kiosk_a_on_kiosk_b_topic_is_rejected_as_wrong_kiosk(
    data: st.DataObject, a: str, b: str
) -> None:
    msg = data.draw(messages(kiosk=st.just(a)))
    t = msg_type(msg)
    topic = topics.uplink(b, t) if t < 64 else topics.downlink(b, t)
    assume(a != b)
    with pytest.raises(DecodeError) as caught:
        _decode(topic, encode(msg))
    assert caught.value.reason == "wrong_kiosk"
