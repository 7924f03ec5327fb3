"""Both shared-state implementations honour the same contract."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from server.config import Settings
from server.core.shared_state import (
    MemorySharedState,
    Presence,
    RedisSharedState,
    SharedState,
    make_shared_state,
)


@pytest.fixture(params=["memory", "redis"])
def state(request: pytest.FixtureRequest) -> Iterator[SharedState]:
    if request.param == "memory":
        yield MemorySharedState()
        return
    url = request.getfixturevalue("redis_url")
    redis_state = RedisSharedState(url, namespace=f"t{uuid.uuid4().hex[:8]}")
    yield redis_state
    redis_state.close()


def test_seen_keys_are_reported_only_after_being_marked(state: SharedState) -> None:
    assert state.seen_many(["up:K1:1", "up:K1:2"]) == [False, False]
    state.mark_seen(["up:K1:2"], ttl_s=60)
    assert state.seen_many(["up:K1:1", "up:K1:2"]) == [False, True]
    assert state.seen_many([]) == []


def test_seen_keys_expire(state: SharedState) -> None:
    state.mark_seen(["up:K1:3"], ttl_s=1)
    time.sleep(1.1)
    assert state.seen_many(["up:K1:3"]) == [False]


def test_result_pushed_before_the_waiter_waits_still_reaches_it(state: SharedState) -> None:
    state.push_result("cmd:early", b"answer", ttl_s=60)
    assert state.wait_result("cmd:early", timeout_s=1) == b"answer"
    assert state.wait_result("cmd:early", timeout_s=0) is None  # taken once


def test_waiter_is_woken_by_a_result_pushed_from_another_thread(state: SharedState) -> None:
    pusher = threading.Timer(0.2, state.push_result, args=("cmd:late", b"late answer", 60))
    pusher.start()
    started = time.monotonic()
    try:
        assert state.wait_result("cmd:late", timeout_s=5) == b"late answer"
    finally:
        pusher.join()
    assert time.monotonic() - started < 3


def test_waiting_for_a_result_that_never_comes_times_out(state: SharedState) -> None:
    started = time.monotonic()
    assert state.wait_result("cmd:never", timeout_s=0.3) is None
    assert 0.25 <= time.monotonic() - started < 2


def test_presence_cache_round_trips(state: SharedState) -> None:
    assert state.get_presence("K7") is None
    state.set_presence("K7", True, 3, 1_700_000_000_000)
    state.set_presence_many([Presence("K8", False, 1, None)])
    assert state.get_presence("K7") == Presence("K7", True, 3, 1_700_000_000_000)
    assert state.get_presence("K8") == Presence("K8", False, 1, None)


def test_counters_add_up_and_filter_by_prefix(state: SharedState) -> None:
    assert state.incr("bridge.received") == 1
    state.incr("bridge.received", by=4)
    state.incr_many({"bridge.rejected.not_cbor": 2, "other.x": 1, "bridge.zero": 0})
    assert state.counters("bridge.") == {"bridge.received": 5, "bridge.rejected.not_cbor": 2}


def test_embedded_default_shares_one_in_process_state() -> None:
    settings = Settings(redis_url="")
    assert make_shared_state(settings) is make_shared_state(settings)
    assert isinstance(make_shared_state(settings), MemorySharedState)


def test_redis_url_selects_redis(redis_url: str) -> None:
    state = make_shared_state(Settings(redis_url=redis_url))
    try:
        assert isinstance(state, RedisSharedState)
    finally:
        state.close()
