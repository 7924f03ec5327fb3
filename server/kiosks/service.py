"""Kiosk registry use cases. Services flush, never commit: the entry point owns the transaction."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from firmware_protocol.messages import CmdOp, CmdResult
from server.accounts import service as accounts
from server.accounts.rules import Principal
from server.bookings import rules as ad_rules
from server.bookings import service as bookings
from server.bridge.commands import CommandChannel
from server.broker.credentials import atomic_write, generate_password, hash_password
from server.broker.mosquitto import BrokerFiles, reload_mosquitto, write_mosquitto_files
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.errors import Conflict, DomainError, NotFound, Timeout
from server.kiosks import repository as repo
from server.kiosks import rules
from server.kiosks.repository import KioskFilters, KioskRow
from server.models import Kiosk, KioskState, Partner, Slot, SlotStatus

Need = Literal["umbrella", "free_slot"]


class InvalidKiosk(DomainError):
    status_code = 422
    code = "invalid_kiosk"


@dataclass(frozen=True)
class KioskCredentials:
    """What registration hands out once: the plain password is never stored."""

    kiosk_id: str
    password: str


@dataclass(frozen=True)
class KioskDetail:
    row: KioskRow
    state: KioskState | None
    slots: Sequence[Slot]


@dataclass(frozen=True)
class NearbyKiosk:
    row: KioskRow
    distance_m: float


def _partner(session: Session, partner_id: int) -> Partner:
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise NotFound(f"partner {partner_id} does not exist", partner_id=partner_id)
    return partner


def _free_id(session: Session, rng: random.Random | None, taken: set[str]) -> str:
    for _ in range(50):
        kiosk_id = rules.new_kiosk_id(rng)
        if kiosk_id not in taken and not repo.existing_ids(session, [kiosk_id]):
            return kiosk_id
    raise Conflict("could not find a free kiosk id; pass one explicitly")


def _new_kiosk(
    *,
    kiosk_id: str,
    partner_id: int,
    name: str,
    lat: float,
    lon: float,
    address: str,
    venue_type: str,
    timezone: str = rules.DEFAULT_TIMEZONE,
    slot_count: int = rules.DEFAULT_SLOT_COUNT,
    loop_seconds: int = ad_rules.DEFAULT_LOOP_SECONDS,
    spot_seconds: int = ad_rules.DEFAULT_SPOT_SECONDS,
    open_hour: int = 0,
    close_hour: int = 24,
) -> tuple[Kiosk, list[KioskState | Slot], str]:
    """The rows of a new kiosk (registry facts, offline state, empty slots) and its password."""
    password = generate_password()
    kiosk = Kiosk(
        id=kiosk_id,
        name=name,
        partner_id=partner_id,
        lat=lat,
        lon=lon,
        address=address,
        venue_type=venue_type,
        timezone=timezone,
        slot_count=slot_count,
        loop_seconds=loop_seconds,
        spot_seconds=spot_seconds,
        open_hour=open_hour,
        close_hour=close_hour,
        mqtt_password_hash=hash_password(password),
        created_at=clock.now(),
    )
    children: list[KioskState | Slot] = [
        KioskState(kiosk_id=kiosk_id, online=False, conn=0, max_seq=0)
    ]
    children.extend(
        Slot(kiosk_id=kiosk_id, slot_no=n, status=SlotStatus.EMPTY, applied_seq=0)
        for n in range(1, slot_count + 1)
    )
    return kiosk, children, password


def register_kiosk(
    session: Session,
    *,
    partner_id: int,
    name: str,
    lat: float,
    lon: float,
    address: str,
    venue_type: str,
    kiosk_id: str | None = None,
    timezone: str = rules.DEFAULT_TIMEZONE,
    slot_count: int = rules.DEFAULT_SLOT_COUNT,
    loop_seconds: int = ad_rules.DEFAULT_LOOP_SECONDS,
    spot_seconds: int = ad_rules.DEFAULT_SPOT_SECONDS,
    open_hour: int = 0,
    close_hour: int = 24,
    cloud_usernames: Iterable[str] = ("cloud",),
    rng: random.Random | None = None,
) -> KioskCredentials:
    """Register a kiosk with its state row and empty slots; return its one-time password.

    The MQTT username and client id are the kiosk id (firmware_protocol/topics.py), so the
    id may not collide with a cloud user.
    """
    _partner(session, partner_id)
    try:
        venue = rules.resolve_venue_type(venue_type)
    except ValueError as exc:
        raise InvalidKiosk(str(exc)) from exc
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise InvalidKiosk(f"coordinates out of range: lat={lat}, lon={lon}")
    if not 1 <= slot_count <= rules.MAX_SLOT_COUNT:
        raise InvalidKiosk(f"slot_count must be 1..{rules.MAX_SLOT_COUNT}, got {slot_count}")
    _check_ad_screen(loop_seconds, spot_seconds, open_hour, close_hour)
    if kiosk_id is None:
        kiosk_id = _free_id(session, rng, set())
    elif not rules.valid_kiosk_id(kiosk_id):
        raise InvalidKiosk(f"kiosk id {kiosk_id!r} must match [A-Za-z0-9_-]{{1,32}}")
    elif repo.existing_ids(session, [kiosk_id]):
        raise Conflict(f"kiosk {kiosk_id} already exists", kiosk_id=kiosk_id)
    if kiosk_id in set(cloud_usernames):
        raise InvalidKiosk(f"kiosk id {kiosk_id!r} is reserved for a cloud MQTT user")
    kiosk, children, password = _new_kiosk(
        kiosk_id=kiosk_id,
        partner_id=partner_id,
        name=name,
        lat=lat,
        lon=lon,
        address=address,
        venue_type=venue,
        timezone=timezone,
        slot_count=slot_count,
        loop_seconds=loop_seconds,
        spot_seconds=spot_seconds,
        open_hour=open_hour,
        close_hour=close_hour,
    )
    session.add(kiosk)
    session.flush()  # the kiosk row first: state and slots reference it
    repo.add(session, *children)
    session.flush()
    return KioskCredentials(kiosk_id=kiosk_id, password=password)


def _check_ad_screen(loop_seconds: int, spot_seconds: int, open_hour: int, close_hour: int) -> None:
    try:
        ad_rules.validate_loop(loop_seconds, spot_seconds)
        ad_rules.validate_opening_hours(open_hour, close_hour)
    except ad_rules.RuleError as exc:
        raise InvalidKiosk(str(exc)) from exc


def set_ad_screen(
    session: Session,
    kiosk_id: str,
    *,
    loop_seconds: int | None = None,
    spot_seconds: int | None = None,
    open_hour: int | None = None,
    close_hour: int | None = None,
) -> Kiosk:
    """Change the ad screen's loop and the venue's opening hours (SPEC §4 Inventory); None
    keeps a value. A new loop size applies to the hours not yet played and is refused if
    one of them already sold more spots than the new loop holds. New opening hours apply to
    what is sold from now on; what is already sold stays sold."""
    kiosk = session.get(Kiosk, kiosk_id, with_for_update=True)
    if kiosk is None:
        raise NotFound(f"kiosk {kiosk_id} does not exist", kiosk_id=kiosk_id)
    loop = kiosk.loop_seconds if loop_seconds is None else loop_seconds
    spot = kiosk.spot_seconds if spot_seconds is None else spot_seconds
    opens = kiosk.open_hour if open_hour is None else open_hour
    closes = kiosk.close_hour if close_hour is None else close_hour
    _check_ad_screen(loop, spot, opens, closes)
    if loop // spot != kiosk.loop_seconds // kiosk.spot_seconds:
        bookings.resize_loop(session, kiosk_id, loop // spot)
    kiosk.loop_seconds, kiosk.spot_seconds = loop, spot
    kiosk.open_hour, kiosk.close_hour = opens, closes
    session.flush()
    return kiosk


def rotate_password(session: Session, kiosk_id: str) -> KioskCredentials:
    """New password, old one invalid once the broker files are rewritten and reloaded."""
    kiosk = repo.get_kiosk(session, kiosk_id)
    if kiosk is None:
        raise NotFound(f"kiosk {kiosk_id} does not exist", kiosk_id=kiosk_id)
    password = generate_password()
    kiosk.mqtt_password_hash = hash_password(password)
    session.flush()
    return KioskCredentials(kiosk_id=kiosk_id, password=password)


def seed_fleet(
    session: Session,
    count: int,
    *,
    partner_id: int,
    lat: float,
    lon: float,
    radius_m: float = 3_000.0,
    venue_types: Sequence[str] | None = None,
    name_prefix: str = "Kiosk",
    rng: random.Random | None = None,
) -> list[KioskCredentials]:
    """Register `count` kiosks scattered over a disc around (lat, lon), venue types in turn.

    Ids are drawn up front and checked against the database in one query per 500, and rows
    are flushed 500 kiosks at a time, so a fleet of thousands costs a few round trips.
    """
    if not 0 <= count <= 100_000:
        raise InvalidKiosk("count must be 0..100000 (ids are K + 6 digits)")
    _partner(session, partner_id)
    r = rng or random.Random()
    venues = [rules.resolve_venue_type(v) for v in (venue_types or list(rules.VENUE_TYPES))]
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        batch = {rules.new_kiosk_id(r) for _ in range(count - len(ids))} - seen
        seen |= batch
        clash = repo.existing_ids(session, batch)
        ids.extend(sorted(batch - clash))
    points = rules.scatter_around(lat, lon, count, radius_m, r)
    creds: list[KioskCredentials] = []
    for start in range(0, count, 500):
        kiosks: list[Kiosk] = []
        children: list[KioskState | Slot] = []
        for i in range(start, min(count, start + 500)):
            kiosk, rows, password = _new_kiosk(
                kiosk_id=ids[i],
                partner_id=partner_id,
                name=f"{name_prefix} {i + 1}",
                lat=points[i][0],
                lon=points[i][1],
                address=f"Seeded site {i + 1}",
                venue_type=venues[i % len(venues)],
            )
            kiosks.append(kiosk)
            children.extend(rows)
            creds.append(KioskCredentials(kiosk_id=kiosk.id, password=password))
        repo.add(session, *kiosks)
        session.flush()
        repo.add(session, *children)
        session.flush()
    return creds


PROVISIONING_HEADER = ("kiosk_id", "password")


def render_provisioning_csv(credentials: Iterable[KioskCredentials]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PROVISIONING_HEADER)
    for c in credentials:
        writer.writerow((c.kiosk_id, c.password))
    return buf.getvalue()


def write_provisioning_csv(path: Path, credentials: Iterable[KioskCredentials]) -> Path:
    """`kiosk_id,password` with a header line, mode 0600: it holds plain passwords."""
    atomic_write(path, render_provisioning_csv(credentials), mode=0o600)
    return path


def read_provisioning_csv(path: Path) -> list[KioskCredentials]:
    with path.open(newline="", encoding="utf-8") as f:
        return [
            KioskCredentials(kiosk_id=r["kiosk_id"], password=r["password"])
            for r in csv.DictReader(f)
        ]


def cloud_users(settings: Settings) -> dict[str, str]:
    return {settings.mqtt_username: settings.mqtt_password}


def export_broker_files(
    session: Session, settings: Settings, *, pid_file: Path | None = None, mode: int = 0o600
) -> BrokerFiles:
    """Write the broker password and ACL files from the registry (+ the cloud user), then
    SIGHUP Mosquitto if a pid file is given. The embedded broker notices the new files itself."""
    files = write_mosquitto_files(
        settings.broker_password_file,
        settings.broker_acl_file,
        kiosks=repo.credentials(session),
        cloud_users=cloud_users(settings),
        mode=mode,
    )
    if pid_file is not None:
        reload_mosquitto(pid_file)
    return files


# --- reads ---------------------------------------------------------------------------------


def list_kiosks(
    session: Session, filters: KioskFilters, *, limit: int = 50, offset: int = 0
) -> tuple[list[KioskRow], int]:
    return repo.list_kiosks(session, filters, limit=limit, offset=offset)


def get_kiosk(session: Session, kiosk_id: str) -> KioskDetail:
    row = repo.kiosk_row(session, kiosk_id)
    if row is None:
        raise NotFound(f"kiosk {kiosk_id} does not exist", kiosk_id=kiosk_id)
    return KioskDetail(
        row=row, state=repo.get_state(session, kiosk_id), slots=repo.slots_of(session, kiosk_id)
    )


def nearby(
    session: Session,
    *,
    lat: float,
    lon: float,
    radius_m: float,
    need: Need,
    limit: int = 10,
) -> list[NearbyKiosk]:
    """Online kiosks within `radius_m` that have an umbrella to rent or a free slot to return
    into (SPEC §2), nearest first by haversine distance."""
    box = rules.bounding_box(lat, lon, radius_m)
    # The planar SQL order can differ from haversine at the margin: over-fetch, then re-rank.
    candidates = repo.nearby_candidates(
        session,
        lat=lat,
        lon=lon,
        box=box,
        lon_scale=rules.planar_scale(lat),
        need=need,
        limit=limit * 2 + 10,
    )
    found = [
        NearbyKiosk(row=c, distance_m=rules.haversine_m(lat, lon, c.kiosk.lat, c.kiosk.lon))
        for c in candidates
    ]
    found = [k for k in found if k.distance_m <= radius_m]
    found.sort(key=lambda k: (k.distance_m, k.row.kiosk.id))
    return found[:limit]


# --- commands ----------------------------------------------------------------------------


def command(
    db: Database,
    channel: CommandChannel,
    kiosk_id: str,
    op: CmdOp,
    slot: int | None,
    *,
    timeout_s: float,
    actor: Principal,
) -> CmdResult:
    """Send a command and wait for the kiosk's answer (the channel commits its own record).

    An offline kiosk is refused at once with a clear reason rather than left to time out.
    A command that is sent is audit-logged first, in the transaction that checked the kiosk
    (the answer is in the command's own record).
    """
    with db.transaction(immediate=True) as session:
        row = get_kiosk(session, kiosk_id).row
        if slot is not None and slot > row.kiosk.slot_count:
            raise InvalidKiosk(
                f"kiosk {kiosk_id} has {row.kiosk.slot_count} slots, not {slot}",
                kiosk_id=kiosk_id,
            )
        if not row.online:
            raise Conflict(f"kiosk {kiosk_id} is offline", kiosk_id=kiosk_id)
        accounts.record_change(
            session,
            actor,
            "kiosk.command",
            f"kiosk:{kiosk_id}",
            op.value + ("" if slot is None else f" slot {slot}"),
        )
    result = channel.send(kiosk_id, op, slot, timeout_s=timeout_s)
    if result is None:
        raise Timeout(f"kiosk {kiosk_id} did not answer within {timeout_s:g} s", kiosk_id=kiosk_id)
    return result
