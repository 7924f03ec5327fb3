"""Playlist use cases: the acknowledgement hook the bridge calls, the operators' views, and
the house content. Flushes, never commits (CONVENTIONS: transactions belong to the edge).

Compiling and pushing is `jobs.py` (a scheduled entry point of its own)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy.orm import Session

from firmware_protocol.messages import CmdResult
from server.core.errors import NotFound
from server.models import PlaylistVersion
from server.playlists import repository as repo
from server.playlists import rules

log = logging.getLogger(__name__)

HOUSE_DIR = Path(__file__).with_name("house")
#: Where the API serves house content (router.py); kiosks download it like any creative.
HOUSE_PATH = "/api/v1/house"


class UnknownKiosk(NotFound):
    code = "unknown_kiosk"


class UnknownVersion(NotFound):
    code = "unknown_playlist_version"


# ------------------------------------------------------------------ house content


@lru_cache(maxsize=1)
def _house_files() -> tuple[tuple[str, str, str], ...]:
    """(name, file name, sha256) of every shipped house asset, by name."""
    out = []
    for path in sorted(HOUSE_DIR.glob("*.svg")):
        out.append((path.stem, path.name, hashlib.sha256(path.read_bytes()).hexdigest()))
    return tuple(out)


def house_items(media_base_url: str) -> tuple[rules.HouseItem, ...]:
    """The network's own content for unsold spots (announcements, travel tips)."""
    base = media_base_url.rstrip("/")
    return tuple(
        rules.HouseItem(name, rules.Media(f"{base}{HOUSE_PATH}/{file}", sha))
        for name, file, sha in _house_files()
    )


def house_file(file_name: str) -> Path:
    """A shipped house asset by file name; only names we ship, so no path escapes."""
    for _, file, _ in _house_files():
        if file == file_name:
            return HOUSE_DIR / file
    raise NotFound(f"no house content {file_name!r}", file=file_name)


# ------------------------------------------------------------------ acknowledgement


def record_results(session: Session, results: Sequence[tuple[CmdResult, datetime]]) -> None:
    """KioskStateService `on_results` hook, in the bridge's batch transaction: a CmdResult
    answering a playlist (firmware_protocol SPEC §4.3) sets that version's `acked_at` and
    `ack_result`. The kiosk answers again at every reconnect (the playlist is retained);
    the first answer is kept. Results of the command channel never get here; any other
    cmd_id is not a playlist's and is ignored."""
    if not results:
        return
    by_cmd = {v.cmd_id: v for v in repo.versions_by_cmd(session, {r.cmd_id for r, _ in results})}
    for result, received_at in results:
        version = by_cmd.get(result.cmd_id)
        if version is None or version.kiosk_id != result.kiosk_id:
            continue
        if version.acked_at is None:
            version.acked_at = received_at
            version.ack_result = result.status.value
            if result.status.value != "ok":
                log.warning(
                    "kiosk %s answered playlist v%d with %s",
                    result.kiosk_id,
                    version.version,
                    result.status.value,
                )
    session.flush()


# ------------------------------------------------------------------ operators' views


@dataclass(frozen=True, slots=True)
class KioskPlaylists:
    kiosk_id: str
    #: What the kiosk's latest heartbeat says it plays (`plv`).
    reported_version: int | None
    versions: list[PlaylistVersion]


def list_versions(session: Session, kiosk_id: str, limit: int = 50) -> KioskPlaylists:
    if not repo.kiosk_exists(session, kiosk_id):
        raise UnknownKiosk(f"kiosk {kiosk_id} is not registered", kiosk_id=kiosk_id)
    return KioskPlaylists(
        kiosk_id,
        repo.reported_version(session, kiosk_id),
        repo.list_versions(session, kiosk_id, limit),
    )


@dataclass(frozen=True, slots=True)
class Playing:
    """Why a kiosk plays what it plays at `at`."""

    kiosk_id: str
    at: datetime
    #: The version the answer is read from, and why that one: "reported" (the kiosk's
    #: heartbeat `plv`), "acknowledged" (its latest `ok`), "latest" (sent, not yet answered).
    version: PlaylistVersion | None
    source: str | None
    reported_version: int | None
    latest_version: int | None
    screen: rules.OnScreen | None
    booking_name: str | None = None
    booking_status: str | None = None
    advertiser_name: str | None = None
    creative_title: str | None = None
    creative_status: str | None = None

    @property
    def explanation(self) -> str:
        s = self.screen
        if self.version is None:
            return "no playlist was compiled for this kiosk yet: it shows its idle image"
        if s is None:
            return (
                f"playlist v{self.version.version} has no block at this time (closed hours or"
                " outside the compiled window): the kiosk shows its idle image"
            )
        spot = s.spot
        if spot.rule == rules.BOOKED:
            return (
                f"booking {spot.booking_id} of advertiser {spot.advertiser_id} bought this spot"
                f" in daypart {spot.daypart}; creative {spot.creative_id} is in rotation"
            )
        if spot.rule == rules.MAKE_GOOD:
            return (
                f"make-good for booking {spot.booking_id}: spots it lost while the kiosk was"
                f" offline are played in unsold spots; creative {spot.creative_id}"
            )
        if spot.note == rules.NOT_APPROVED:
            return (
                f"booking {spot.booking_id} bought this spot in daypart {spot.daypart}, but it"
                " has no approved creative yet, so house content plays"
            )
        return "unsold spot: house content plays"


def playing(session: Session, kiosk_id: str, at: datetime) -> Playing:
    if not repo.kiosk_exists(session, kiosk_id):
        raise UnknownKiosk(f"kiosk {kiosk_id} is not registered", kiosk_id=kiosk_id)
    reported = repo.reported_version(session, kiosk_id)
    latest = repo.latest_version(session, kiosk_id)
    version: PlaylistVersion | None = None
    source: str | None = None
    if reported is not None:
        version = repo.get_version(session, kiosk_id, reported)
        source = "reported" if version is not None else None
    if version is None:
        version = repo.latest_acked(session, kiosk_id)
        source = "acknowledged" if version is not None else None
    if version is None and latest is not None:
        version, source = latest, "latest"
    screen = None if version is None else rules.on_screen(rules.from_body(version.body), at)
    out = Playing(
        kiosk_id,
        at,
        version,
        source,
        reported,
        None if latest is None else latest.version,
        screen,
    )
    if screen is None or screen.spot.booking_id is None:
        return out
    facts = repo.booking_facts(session, screen.spot.booking_id)
    creative = (
        None if screen.spot.creative_id is None else repo.creative(session, screen.spot.creative_id)
    )
    return replace(
        out,
        booking_name=None if facts is None else facts[0].name,
        booking_status=None if facts is None else facts[0].status.value,
        advertiser_name=None if facts is None else facts[1].name,
        creative_title=None if creative is None else creative.title,
        creative_status=None if creative is None else creative.status.value,
    )
