"""Scheduled playlist work (SPEC §4 Playlists): compile what is due, push it retained.

`compile_and_push` is the scheduler's entry point. It owns its transactions: one to find
the kiosks that are due, one per chunk of compiled kiosks, and one to record what was
published, because a publish happens only after the version it sends has committed (the
kiosk's answer may land on any bridge within milliseconds, and must find the row).

Safe with several scheduler processes: a new version is inserted with ON CONFLICT DO
NOTHING on the (kiosk_id, version) key, so two runs compiling the same kiosk at once make
one version; only the inserting run counts it as new. Publishing the same version twice
is harmless (retained, same cmd id: the kiosk applies it once).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, aliased

from firmware_protocol import encode, topics
from firmware_protocol.messages import MsgType
from server.bridge.commands import Publisher
from server.config import Settings
from server.core.clock import clock, to_ms
from server.core.db import Database
from server.delivery.service import make_goods_due
from server.models import PlaylistVersion
from server.playlists import repository as repo
from server.playlists import rules, service

log = logging.getLogger(__name__)

#: A booking change counts as newer than a compile that started up to this long after it:
#: the booking's transaction may set `updated_at` before a compile starts and commit after
#: the compile read the reservations. Such kiosks are compiled again for a minute; an
#: unchanged result makes no new version.
CHANGE_SLACK = timedelta(seconds=60)
#: A playlist cut short to fit the downlink size is not recompiled more often than this.
RECHECK_TRUNCATED = timedelta(minutes=10)


@dataclass(slots=True)
class CompileSummary:
    due: int = 0
    #: Due but left for the next run (`playlist_max_per_run`).
    deferred: int = 0
    new_versions: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)
    published: int = 0
    publish_failed: int = 0
    compile_s: float = 0.0
    publish_s: float = 0.0


def kiosks_due(session: Session, now: datetime, settings: Settings) -> list[str]:
    """Kiosks never compiled, whose latest playlist covers less than `playlist_min_ahead_h`,
    or with a booking changed (held, confirmed, released, expired, creative reviewed) or a
    make-good owed after their latest compile; the most urgent first."""
    latest = repo.latest_versions(session)
    horizon = now + timedelta(hours=settings.playlist_min_ahead_h)
    # Most urgent first (a run compiles at most `playlist_max_per_run`): never compiled,
    # then changed bookings, then windows running short, the shortest first.
    due: dict[str, tuple[int, datetime]] = {}
    for kiosk_id in repo.all_kiosk_ids(session):
        v = latest.get(kiosk_id)
        if v is None:
            due[kiosk_id] = (0, now)
        elif v.ends_at < horizon and v.compiled_at < now - RECHECK_TRUNCATED:
            due[kiosk_id] = (2, v.ends_at)
    if latest:
        since = min(v.compiled_at for v in latest.values()) - CHANGE_SLACK
        changes = repo.booking_changes_since(session, since)
        for kiosk_id, owed_at in repo.make_goods_since(session, since).items():
            changes[kiosk_id] = max(owed_at, changes.get(kiosk_id, owed_at))
        for kiosk_id, changed in changes.items():
            v = latest.get(kiosk_id)
            if v is not None and changed > v.compiled_at - CHANGE_SLACK:
                due[kiosk_id] = (1, changed)
    return sorted(due, key=lambda k: (*due[k], k))


@dataclass(slots=True)
class ChunkResult:
    new: list[tuple[str, int]] = field(default_factory=list)
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)


def compile_chunk(
    session: Session,
    now: datetime,
    kiosk_ids: Collection[str],
    *,
    hours: int,
    house: tuple[rules.HouseItem, ...],
) -> ChunkResult:
    """Compile the given kiosks in the caller's transaction; insert a version for each whose
    content changed, confirm (`compiled_at`) the latest of each that did not."""
    out = ChunkResult()
    kiosks = repo.load_kiosks(session, kiosk_ids)
    ids = [k.kiosk_id for k in kiosks]
    if not ids:
        return out
    latest = repo.latest_versions(session, ids)
    reserved = repo.confirmed_reservations(
        session, ids, now - rules.HOUR, now + rules.HOUR * (hours + 1)
    )
    owed = make_goods_due(session, ids)
    booking_ids = {r.booking_id for r in reserved}
    booking_ids.update(m.booking_id for dues in owed.values() for m in dues)
    media = repo.approved_media(session, booking_ids)

    refs: dict[int, rules.BookingRef] = {}
    hour_bookings: dict[tuple[int, int], rules.HourBooking] = {}
    by_kiosk: dict[str, dict[datetime, list[rules.HourBooking]]] = {}
    for r in reserved:
        ref = refs.get(r.booking_id)
        if ref is None:
            creatives = tuple(media.get(r.booking_id, ()))
            ref = refs[r.booking_id] = rules.BookingRef(
                r.booking_id, r.advertiser_id, r.dayparts, creatives
            )
        hb = hour_bookings.get((r.booking_id, r.spots))
        if hb is None:
            hb = hour_bookings[(r.booking_id, r.spots)] = rules.HourBooking(ref, r.spots)
        by_kiosk.setdefault(r.kiosk_id, {}).setdefault(r.starts_at, []).append(hb)

    rows: list[dict[str, Any]] = []
    confirm: list[tuple[str, int]] = []
    # Hours shared by the chunk's kiosks are compiled once (`hour_bookings` and `house`
    # stay alive for the whole chunk, as the memo's identity keys need).
    memo: dict[Hashable, tuple[rules.Spot, ...]] = {}
    for kiosk in kiosks:
        k = kiosk.kiosk_id
        make_goods = []
        for m in owed.get(k, ()):
            allowed = set(m.creative_ids)
            creatives = tuple(c for c in media.get(m.booking_id, ()) if c[0] in allowed)
            make_goods.append(
                rules.MakeGoodOwed(m.booking_id, m.advertiser_id, creatives, m.spots_remaining)
            )
        try:
            compiled = rules.compile_kiosk(
                kiosk, now, hours, by_kiosk.get(k, {}), make_goods, house, memo=memo
            )
        except (rules.Unplayable, ValueError, KeyError) as e:
            # One kiosk's bad configuration must not hold back the others.
            log.error("cannot compile the playlist of kiosk %s: %s", k, e)
            out.failed.append(k)
            continue
        prev = latest.get(k)
        if prev is not None and prev.content_hash == compiled.content_hash:
            confirm.append((k, prev.version))
            continue
        rows.append(
            {
                "kiosk_id": k,
                "version": 1 if prev is None else prev.version + 1,
                "starts_at": compiled.starts_at,
                "ends_at": compiled.ends_at,
                "content_hash": compiled.content_hash,
                "body": compiled.body,
                "spot_count": compiled.spot_count,
                "compiled_at": now,
                "cmd_id": uuid.uuid4().hex,
                "published_at": None,
                "acked_at": None,
                "ack_result": None,
            }
        )
    out.new = sorted(repo.insert_versions(session, rows))
    repo.touch_compiled(session, confirm, now)
    out.unchanged = len(confirm)
    return out


def push_pending(
    db: Database,
    publisher: Publisher,
    now: datetime,
    *,
    republish_after: timedelta,
    kiosk_ids: Collection[str] | None = None,
) -> tuple[int, int]:
    """Publish (retained, QoS 1, waiting for PUBACK) each kiosk's latest version that was
    never published, or was published `republish_after` ago and never acknowledged.
    Returns (published, failed); a failed one is tried again on the next run."""
    with db.transaction() as session:
        latest = repo.latest_versions(session, kiosk_ids)
        due = [
            v
            for v in latest.values()
            if v.published_at is None
            or (v.acked_at is None and v.published_at < now - republish_after)
        ]
        bodies = repo.bodies(session, {(v.kiosk_id, v.version) for v in due})
    sent: list[str] = []
    failed = 0
    for v in sorted(due, key=lambda v: v.kiosk_id):
        stored = rules.from_body(bodies[(v.kiosk_id, v.version)])
        msg = rules.to_message(
            v.kiosk_id, stored.blocks, stored.spot_ms, v.version, v.cmd_id, to_ms(clock.now())
        )
        try:
            publisher.publish_and_wait(
                topics.downlink(v.kiosk_id, MsgType.PLAYLIST), encode(msg), qos=1, retain=True
            )
        except Exception:
            failed += 1
            log.warning(
                "could not publish playlist v%d to %s", v.version, v.kiosk_id, exc_info=True
            )
            continue
        sent.append(v.cmd_id)
    if sent:
        with db.transaction(immediate=True) as session:
            repo.mark_published(session, sent, clock.now())
    return len(sent), failed


def compile_and_push(
    db: Database,
    publisher: Publisher | None,
    now: datetime,
    *,
    settings: Settings,
    kiosk_ids: Sequence[str] | None = None,
) -> CompileSummary:
    """The scheduler's job (every `settings.playlist_compile_interval_s`): compile the kiosks
    that are due, at most `playlist_max_per_run` of them (or exactly `kiosk_ids`, due or
    not), then publish what is unpublished. `publisher=None` compiles only (benchmarks)."""
    summary = CompileSummary()
    started = time.perf_counter()
    with db.transaction() as session:
        if kiosk_ids is None:
            due = kiosks_due(session, now, settings)
        else:
            due = sorted(repo.existing_kiosk_ids(session, kiosk_ids))
    summary.due = len(due)
    if len(due) > settings.playlist_max_per_run:
        # The rest are still due on the next run: a fleet-wide recompile spreads over runs.
        summary.deferred = len(due) - settings.playlist_max_per_run
        due = due[: settings.playlist_max_per_run]
    house = service.house_items(settings.media_url_base)
    chunk = max(1, settings.playlist_chunk)
    for i in range(0, len(due), chunk):
        part = due[i : i + chunk]
        try:
            with db.transaction(immediate=True) as session:
                result = compile_chunk(
                    session, now, part, hours=settings.playlist_ahead_h, house=house
                )
        except Exception:
            # The next run retries the chunk; the others go ahead.
            log.exception("compiling playlists of %d kiosks failed", len(part))
            summary.failed += part
            continue
        summary.new_versions += len(result.new)
        summary.unchanged += result.unchanged
        summary.failed += result.failed
    summary.compile_s = time.perf_counter() - started
    if publisher is not None:
        started = time.perf_counter()
        summary.published, summary.publish_failed = push_pending(
            db,
            publisher,
            now,
            republish_after=timedelta(seconds=settings.playlist_republish_s),
            kiosk_ids=None if kiosk_ids is None else set(kiosk_ids),
        )
        summary.publish_s = time.perf_counter() - started
    return summary


def prune_versions(session: Session, now: datetime, *, keep_days: int = 14) -> int:
    """Delete versions compiled more than `keep_days` ago, except each kiosk's latest (the
    due-check reads the latest versions of every kiosk on each run: keep the table small)."""
    newer = aliased(PlaylistVersion)
    has_newer = (
        select(func.count())
        .where(newer.kiosk_id == PlaylistVersion.kiosk_id, newer.version > PlaylistVersion.version)
        .scalar_subquery()
    )
    result = session.execute(
        delete(PlaylistVersion)
        .where(PlaylistVersion.compiled_at < now - timedelta(days=keep_days), has_newer > 0)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
