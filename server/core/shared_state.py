"""State shared by every API, bridge and scheduler process: Redis in production, a dict in the
embedded default (SPEC §6: one machine, nothing installed but Python).

Nothing here is authoritative. The database decides duplicates (uplink receipts) and holds
presence; this is a fast pre-filter, a presence cache, the rendezvous where a bridge hands a
command result to whichever process is waiting for it, and cheap counters.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import redis

from server.config import Settings


@dataclass(frozen=True, slots=True)
class Presence:
    kiosk_id: str
    online: bool
    conn: int
    last_seen_ms: int | None


@runtime_checkable
class SharedState(Protocol):
    # -- duplicate pre-filter (the uplink_receipts primary key stays the real filter)
    def seen_many(self, keys: Sequence[str]) -> list[bool]: ...
    def mark_seen(self, keys: Sequence[str], ttl_s: int) -> None: ...

    # -- command results: a push before the waiter starts waiting is not lost
    def push_result(self, key: str, value: bytes, ttl_s: int) -> None: ...
    def wait_result(self, key: str, timeout_s: float) -> bytes | None: ...

    # -- presence cache
    def set_presence(
        self, kiosk_id: str, online: bool, conn: int, last_seen_ms: int | None
    ) -> None: ...
    def set_presence_many(self, presences: Iterable[Presence]) -> None: ...
    def get_presence(self, kiosk_id: str) -> Presence | None: ...

    # -- counters
    def incr(self, name: str, by: int = 1) -> int: ...
    def incr_many(self, deltas: Mapping[str, int]) -> None: ...
    def counters(self, prefix: str = "") -> dict[str, int]: ...

    # -- cached documents (GBFS feeds): bytes under a key, dropped after `ttl_s` seconds.
    # The expiry only bounds memory; callers that must not serve stale data check the age
    # they stored inside the value against their own clock (server/gbfs/service.py).
    def cache_get(self, key: str) -> bytes | None: ...
    def cache_set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    def close(self) -> None: ...


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisSharedState:
    """Every multi-key operation is one round trip (MGET, pipelines)."""

    #: SET with expiry for many keys in one command: a pipeline of 500 SETs costs the
    #: bridge more client-side packing than the rest of its Redis work together.
    _MARK_SEEN = "for _, k in ipairs(KEYS) do redis.call('SET', k, '1', 'EX', ARGV[1]) end"

    #: Longest single BLPOP of `wait_result`.
    BLOCK_SLICE_S = 1.0

    def __init__(self, url: str, *, namespace: str = "umb") -> None:
        self._r = redis.Redis.from_url(url)
        self._ns = namespace
        self._counters_key = f"{namespace}:counters"
        self._mark_seen = self._r.register_script(self._MARK_SEEN)

    def _k(self, kind: str, key: str) -> str:
        return f"{self._ns}:{kind}:{key}"

    def seen_many(self, keys: Sequence[str]) -> list[bool]:
        if not keys:
            return []
        values = self._r.mget([self._k("seen", k) for k in keys])
        return [v is not None for v in values]

    def mark_seen(self, keys: Sequence[str], ttl_s: int) -> None:
        if not keys:
            return
        self._mark_seen(keys=[self._k("seen", k) for k in keys], args=[ttl_s])

    def push_result(self, key: str, value: bytes, ttl_s: int) -> None:
        # A list, not a key with pub/sub: RPUSH before BLPOP still reaches the waiter.
        name = self._k("result", key)
        pipe = self._r.pipeline(transaction=True)
        pipe.rpush(name, value)
        pipe.expire(name, ttl_s)
        pipe.execute()

    def wait_result(self, key: str, timeout_s: float) -> bytes | None:
        name = self._k("result", key)
        if timeout_s <= 0:  # BLPOP 0 would block forever
            got = self._r.lpop(name)
            return got if isinstance(got, bytes) else None
        # BLPOP in slices: a read blocked for long on an idle socket can be cut by the
        # network in between (a 5-s idle read limit was seen here), and a slice also bounds
        # how long a stopped waiter lingers.
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            popped = self._r.blpop([name], timeout=min(left, self.BLOCK_SLICE_S))
            if popped is not None:
                value = popped[1]
                return value if isinstance(value, bytes) else None

    def set_presence(
        self, kiosk_id: str, online: bool, conn: int, last_seen_ms: int | None
    ) -> None:
        self.set_presence_many([Presence(kiosk_id, online, conn, last_seen_ms)])

    def set_presence_many(self, presences: Iterable[Presence]) -> None:
        pipe = self._r.pipeline(transaction=False)
        n = 0
        for p in presences:
            pipe.hset(
                self._k("presence", p.kiosk_id),
                mapping={
                    "online": int(p.online),
                    "conn": p.conn,
                    "last_seen_ms": -1 if p.last_seen_ms is None else p.last_seen_ms,
                },
            )
            n += 1
        if n:
            pipe.execute()

    def get_presence(self, kiosk_id: str) -> Presence | None:
        raw = self._r.hgetall(self._k("presence", kiosk_id))
        if not raw:
            return None
        fields = {_text(k): int(v) for k, v in raw.items()}
        last_seen = fields.get("last_seen_ms", -1)
        return Presence(
            kiosk_id,
            bool(fields.get("online", 0)),
            fields.get("conn", 0),
            None if last_seen < 0 else last_seen,
        )

    def incr(self, name: str, by: int = 1) -> int:
        return int(self._r.hincrby(self._counters_key, name, by))

    def incr_many(self, deltas: Mapping[str, int]) -> None:
        pipe = self._r.pipeline(transaction=False)
        n = 0
        for name, by in deltas.items():
            if by:
                pipe.hincrby(self._counters_key, name, by)
                n += 1
        if n:
            pipe.execute()

    def counters(self, prefix: str = "") -> dict[str, int]:
        raw = self._r.hgetall(self._counters_key)
        out = {_text(k): int(v) for k, v in raw.items()}
        return {k: v for k, v in sorted(out.items()) if k.startswith(prefix)}

    def cache_get(self, key: str) -> bytes | None:
        value = self._r.get(self._k("cache", key))
        return value if isinstance(value, bytes) else None

    def cache_set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._r.set(self._k("cache", key), value, ex=max(1, ttl_s))

    def close(self) -> None:
        self._r.close()


class MemorySharedState:
    """In-process and thread-safe; for the single-process embedded default and for tests.

    The duplicate pre-filter is bounded (oldest keys evicted first): forgetting a key only
    costs a database round trip, because the receipts table is the authoritative filter.
    """

    def __init__(self, *, max_seen: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._results_changed = threading.Condition(self._lock)
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max_seen = max_seen
        self._results: dict[str, deque[tuple[bytes, float]]] = {}
        self._presence: dict[str, Presence] = {}
        self._counters: dict[str, int] = {}
        self._cache: dict[str, tuple[bytes, float]] = {}

    def seen_many(self, keys: Sequence[str]) -> list[bool]:
        now = time.monotonic()
        with self._lock:
            return [self._seen.get(k, 0.0) > now for k in keys]

    def mark_seen(self, keys: Sequence[str], ttl_s: int) -> None:
        expires = time.monotonic() + ttl_s
        with self._lock:
            for k in keys:
                self._seen[k] = expires
                self._seen.move_to_end(k)
            while len(self._seen) > self._max_seen:
                self._seen.popitem(last=False)

    def push_result(self, key: str, value: bytes, ttl_s: int) -> None:
        expires = time.monotonic() + ttl_s
        with self._results_changed:
            self._drop_expired_results()
            self._results.setdefault(key, deque()).append((value, expires))
            self._results_changed.notify_all()

    def wait_result(self, key: str, timeout_s: float) -> bytes | None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._results_changed:
            while True:
                queue = self._results.get(key)
                while queue:
                    value, expires = queue.popleft()
                    if not queue:
                        del self._results[key]
                    if expires > time.monotonic():
                        return value
                    queue = self._results.get(key)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._results_changed.wait(remaining)

    def _drop_expired_results(self) -> None:
        now = time.monotonic()
        for key in [k for k, q in self._results.items() if q and q[-1][1] <= now]:
            del self._results[key]

    def set_presence(
        self, kiosk_id: str, online: bool, conn: int, last_seen_ms: int | None
    ) -> None:
        self.set_presence_many([Presence(kiosk_id, online, conn, last_seen_ms)])

    def set_presence_many(self, presences: Iterable[Presence]) -> None:
        with self._lock:
            for p in presences:
                self._presence[p.kiosk_id] = p

    def get_presence(self, kiosk_id: str) -> Presence | None:
        with self._lock:
            return self._presence.get(kiosk_id)

    def incr(self, name: str, by: int = 1) -> int:
        with self._lock:
            value = self._counters.get(name, 0) + by
            self._counters[name] = value
            return value

    def incr_many(self, deltas: Mapping[str, int]) -> None:
        with self._lock:
            for name, by in deltas.items():
                if by:
                    self._counters[name] = self._counters.get(name, 0) + by

    def counters(self, prefix: str = "") -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in sorted(self._counters.items()) if k.startswith(prefix)}

    def cache_get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[1] <= time.monotonic():
                del self._cache[key]
                return None
            return entry[0]

    def cache_set(self, key: str, value: bytes, ttl_s: int) -> None:
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, (_, expires) in self._cache.items() if expires <= now]:
                del self._cache[stale]
            self._cache[key] = (value, now + max(1, ttl_s))

    def close(self) -> None:
        pass


_embedded: MemorySharedState | None = None
_embedded_lock = threading.Lock()


def make_shared_state(settings: Settings) -> SharedState:
    """Redis when `redis_url` is set; otherwise the one in-process instance.

    The in-process instance is a process-wide singleton on purpose: in the embedded default
    the API, the bridge and the scheduler run as threads of one process and must meet in the
    same place (a command sent by the API is answered through the bridge).
    """
    global _embedded
    if settings.redis_url:
        return RedisSharedState(settings.redis_url)
    with _embedded_lock:
        if _embedded is None:
            _embedded = MemorySharedState()
        return _embedded
