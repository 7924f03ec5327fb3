"""GBFS 3.0 use case: serve a feed from the shared cache, never staler than its ttl.

A feed is built once, serialised once, and stored in the shared state (Redis across API
processes, a dict in the embedded default) as `<last_updated epoch s>\\n<json bytes>`. A read
serves those bytes only while `0 <= now - last_updated < ttl` by the one clock; otherwise it
rebuilds. `last_updated` is stamped before the rows are read, so the data is never older than
the document says. Within a process one thread rebuilds a feed while the others wait for it
and then serve what it stored; separate processes may each rebuild once per ttl, which costs
one query each and cannot serve anything stale.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.errors import NotFound
from server.core.shared_state import SharedState
from server.gbfs import repository as repo
from server.gbfs import rules

CACHE_KEY_PREFIX = "gbfs:v3:"


class UnknownFeed(NotFound):
    code = "unknown_feed"


@dataclass(frozen=True, slots=True)
class ServedFeed:
    #: The document, UTF-8 JSON, exactly as cached.
    body: bytes
    last_updated_s: int
    ttl_s: int
    #: Whole seconds of the ttl left now (for Cache-Control: max-age).
    max_age_s: int


class GbfsFeeds:
    """The feeds of one API process. Thread-safe: FastAPI runs sync endpoints in threads."""

    def __init__(self, settings: Settings, db: Database, cache: SharedState) -> None:
        self._settings = settings
        self._db = db
        self._cache = cache
        self._builders = {name: threading.Lock() for name in rules.FEED_NAMES}

    def ttl_s(self, name: str) -> int:
        s = self._settings
        if name == "station_status":
            return s.gbfs_status_ttl_s
        if name == "station_information":
            return s.gbfs_station_information_ttl_s
        return s.gbfs_static_ttl_s

    def serve(self, name: str) -> ServedFeed:
        """The cached document while it is fresh, else a new one (built by one thread)."""
        if name not in self._builders:
            raise UnknownFeed(f"no GBFS feed named {name!r}", feeds=list(rules.FEED_NAMES))
        ttl = self.ttl_s(name)
        cached = self._cached(name, ttl)
        if cached is not None:
            return cached
        with self._builders[name]:
            cached = self._cached(name, ttl)  # built by the thread we waited for
            if cached is not None:
                return cached
            return self.build(name)

    def build(self, name: str) -> ServedFeed:
        """Build the document from the database now, store it in the cache and return it."""
        if name not in self._builders:
            raise UnknownFeed(f"no GBFS feed named {name!r}", feeds=list(rules.FEED_NAMES))
        ttl = self.ttl_s(name)
        last_updated = rules.stamp(clock.now())
        body = rules.feed_json(last_updated, ttl, self._data_json(name)).encode()
        epoch = int(last_updated.timestamp())
        if ttl > 0:
            self._cache.cache_set(CACHE_KEY_PREFIX + name, b"%d\n" % epoch + body, ttl)
        left = rules.max_age_s(epoch, ttl, clock.now().timestamp())
        return ServedFeed(body, epoch, ttl, left)

    def _cached(self, name: str, ttl: int) -> ServedFeed | None:
        raw = self._cache.cache_get(CACHE_KEY_PREFIX + name)
        if raw is None:
            return None
        head, _, body = raw.partition(b"\n")
        try:
            epoch = int(head)
        except ValueError:
            return None  # not ours (or from an older layout): rebuild over it
        now = clock.now().timestamp()
        if not rules.is_fresh(epoch, ttl, now):
            return None
        left = rules.max_age_s(epoch, ttl, now)
        return ServedFeed(body, epoch, ttl, left)

    def _data_json(self, name: str) -> str:
        """The file's `data`, serialised."""
        s = self._settings
        if name == "gbfs":
            return rules.to_json(rules.discovery(s.gbfs_base_url))
        if name == "system_information":
            facts = rules.system_information(
                rules.SystemFacts(
                    system_id=s.gbfs_system_id,
                    name_zh=s.gbfs_system_name_zh,
                    name_en=s.gbfs_system_name_en,
                    operator_zh=s.gbfs_operator_name_zh,
                    operator_en=s.gbfs_operator_name_en,
                    feed_contact_email=s.gbfs_feed_contact_email,
                    timezone=s.gbfs_timezone,
                )
            )
            return rules.to_json(facts)
        if name == "vehicle_types":
            return rules.to_json(rules.vehicle_types())
        if name == "system_pricing_plans":
            return rules.to_json(rules.system_pricing_plans())
        with self._db.transaction() as session:  # read only: nothing to commit
            if name == "station_information":
                sites = repo.sites(session)
                return rules.to_json({"stations": [rules.station_information(k) for k in sites]})
            if name == "station_status":
                return rules.station_status_data_json(repo.availability(session))
        raise UnknownFeed(f"no GBFS feed named {name!r}", feeds=list(rules.FEED_NAMES))
