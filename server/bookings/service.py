"""Booking use cases (SPEC §4 Booking): kiosk selection, availability, the quote, and the
draft -> held -> confirmed lifecycle. Services flush, never commit.

No loop is oversold: reserving locks the loop hours it needs in (kiosk, hour) order, refuses
if any is full, and the CHECK `sold <= capacity` refuses whatever slipped past that
(models/booking.py). Every status change bumps `revision` and `updated_at`, which is what
the playlist compiler watches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.accounts import service as accounts
from server.accounts.rules import Principal
from server.bookings import repository as repo
from server.bookings import rules
from server.bookings.repository import HourKey, KioskInfo
from server.core.clock import clock
from server.core.errors import Conflict, DomainError, NotFound
from server.core.money import Fen
from server.kiosks import rules as kiosk_rules
from server.models import (
    Booking,
    BookingCreative,
    BookingKiosk,
    BookingStatus,
    CreativeStatus,
)

#: How many full hours a sold-out answer lists one by one (all full kiosks are named).
MAX_FULL_LISTED = 500
#: How many unknown kiosk or creative ids an error names.
MAX_NAMED = 50


class InvalidBooking(DomainError):
    """Bad booking input; `code` says which rule (invalid_daypart, spots_exceed_capacity...)."""

    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message, **details)
        self.code = code


class SoldOut(Conflict):
    code = "sold_out"


class BookingStateConflict(Conflict):
    code = "booking_state"


def _rule_error(exc: rules.RuleError) -> InvalidBooking:
    return InvalidBooking(exc.code, str(exc))


# --- selection ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Near:
    lat: float
    lon: float
    radius_m: float


@dataclass(frozen=True, slots=True)
class Selection:
    """How kiosks are picked; every criterion given must hold (they narrow each other)."""

    kiosk_ids: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    venue_types: tuple[str, ...] | None = None
    near: Near | None = None

    def as_json(self) -> str:
        body: dict[str, object] = {}
        if self.kiosk_ids is not None:
            body["kiosk_ids"] = list(self.kiosk_ids)
        if self.regions is not None:
            body["regions"] = list(self.regions)
        if self.venue_types is not None:
            body["venue_types"] = list(self.venue_types)
        if self.near is not None:
            body["near"] = {
                "lat": self.near.lat,
                "lon": self.near.lon,
                "radius_m": self.near.radius_m,
            }
        return json.dumps(body, ensure_ascii=False, sort_keys=True)


def select_kiosks(session: Session, selection: Selection) -> list[KioskInfo]:
    """The kiosks a selection names, ordered by id. Unknown explicit ids are a 404 naming
    them; a selection that matches nothing is refused."""
    if not any((selection.kiosk_ids, selection.regions, selection.venue_types, selection.near)):
        raise InvalidBooking("empty_selection", "pick kiosks by ids, regions, venue types or near")
    venue_types = None
    if selection.venue_types:
        try:
            venue_types = {kiosk_rules.resolve_venue_type(v) for v in selection.venue_types}
        except ValueError as exc:
            raise InvalidBooking("invalid_venue_type", str(exc)) from exc
    ids = set(selection.kiosk_ids) if selection.kiosk_ids else None
    if ids is not None:
        missing = sorted(ids - repo.existing_kiosk_ids(session, ids))
        if missing:
            raise NotFound(
                f"unknown kiosk(s): {', '.join(missing[:MAX_NAMED])}",
                kiosk_ids=missing[:MAX_NAMED],
                unknown=len(missing),
            )
    bbox = None
    near = selection.near
    if near is not None:
        box = kiosk_rules.bounding_box(near.lat, near.lon, near.radius_m)
        bbox = (box.min_lat, box.min_lon, box.max_lat, box.max_lon)
    found = repo.select_kiosks(
        session,
        ids=ids,
        regions=set(selection.regions) if selection.regions else None,
        venue_types=venue_types,
        bbox=bbox,
    )
    if near is not None:
        found = [
            k
            for k in found
            if kiosk_rules.haversine_m(near.lat, near.lon, k.lat, k.lon) <= near.radius_m
        ]
    if not found:
        raise InvalidBooking("no_kiosks", "no kiosk matches the selection")
    return found


# --- hours and prices --------------------------------------------------------------------------


def _calendars(
    kiosks: Sequence[KioskInfo],
    start: date,
    end: date,
    dayparts: Sequence[rules.Daypart],
    not_before: datetime | None,
) -> dict[tuple[str, int, int], list[rules.LocalHour]]:
    """The sellable hours of each (time zone, opening hours) the kiosks have: kiosks that
    share them share one expansion."""
    out: dict[tuple[str, int, int], list[rules.LocalHour]] = {}
    for k in kiosks:
        key = (k.timezone, k.open_hour, k.close_hour)
        if key not in out:
            out[key] = rules.expand_hours(
                start, end, dayparts, k.timezone, k.open_hour, k.close_hour, not_before=not_before
            )
    return out


def _calendar_of(k: KioskInfo) -> tuple[str, int, int]:
    return (k.timezone, k.open_hour, k.close_hour)


def _parse(dayparts: str, start: date, end: date) -> tuple[rules.Daypart, ...]:
    try:
        parts = rules.parse_dayparts(dayparts)
        rules.validate_dates(start, end)
    except rules.RuleError as exc:
        raise _rule_error(exc) from exc
    return parts


def prices(session: Session) -> dict[str, int]:
    """Fen per spot per kiosk per day for every venue type: the operator's, else the default."""
    set_ = repo.venue_prices(session)
    return {v: rules.venue_price(set_, v) for v in sorted({*rules.DEFAULT_VENUE_PRICES, *set_})}


def set_price(
    session: Session, venue_type: str, fen_per_spot_day: int, *, actor: Principal
) -> dict[str, int]:
    """Set a venue type's price (operators), audit-logged with the old and new price."""
    try:
        venue = kiosk_rules.resolve_venue_type(venue_type)
    except ValueError as exc:
        raise InvalidBooking("invalid_venue_type", str(exc)) from exc
    if not 1 <= fen_per_spot_day <= 100_000_000:
        raise InvalidBooking("invalid_price", "fen_per_spot_day must be 1..100000000")
    before = prices(session).get(venue)
    repo.upsert_venue_price(session, venue, fen_per_spot_day, clock.now())
    accounts.record_change(
        session,
        actor,
        "ad_price.set",
        f"venue_type:{venue}",
        f"fen_per_spot_day {before} -> {fen_per_spot_day}",
    )
    return prices(session)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a booking reserves: per kiosk its sellable hours, days and price."""

    kiosks: list[KioskInfo]
    hours: dict[str, list[rules.LocalHour]]
    days: dict[str, int]
    price: dict[str, Fen]

    @property
    def total(self) -> Fen:
        return Fen(sum(self.price.values()))

    def keys(self) -> list[HourKey]:
        return sorted((k, h.starts_at) for k, hs in self.hours.items() for h in hs)


def _plan(
    session: Session,
    kiosks: Sequence[KioskInfo],
    *,
    spots: int,
    start: date,
    end: date,
    dayparts: Sequence[rules.Daypart],
    now: datetime,
) -> Plan:
    too_small = [k.id for k in kiosks if k.capacity < spots]
    if too_small:
        raise InvalidBooking(
            "spots_exceed_capacity",
            f"{spots} spots per loop is more than the loop of {len(too_small)} kiosk(s) holds",
            kiosk_ids=too_small[:MAX_NAMED],
            capacities={k.id: k.capacity for k in kiosks if k.id in set(too_small[:MAX_NAMED])},
        )
    calendars = _calendars(kiosks, start, end, dayparts, now)
    hours = {k.id: calendars[_calendar_of(k)] for k in kiosks}
    closed = [k for k, hs in hours.items() if not hs]
    if closed:
        raise InvalidBooking(
            "no_open_hours",
            f"{len(closed)} kiosk(s) have no open hour left in these dates and dayparts",
            kiosk_ids=closed[:MAX_NAMED],
        )
    total_hours = sum(len(hs) for hs in hours.values())
    if total_hours > rules.MAX_BOOKING_HOURS:
        raise InvalidBooking(
            "booking_too_large",
            f"{total_hours} kiosk-hours; one booking reserves at most {rules.MAX_BOOKING_HOURS}",
        )
    venue = repo.venue_prices(session)
    days = {k: len({h.day for h in hs}) for k, hs in hours.items()}
    price = {
        k.id: rules.price_fen(spots, days[k.id], rules.venue_price(venue, k.venue_type))
        for k in kiosks
    }
    return Plan(list(kiosks), hours, days, price)


# --- bookings ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookingRequest:
    name: str
    spots_per_loop: int
    start_date: date
    end_date: date
    dayparts: str
    selection: Selection
    creative_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BookingView:
    booking: Booking
    kiosks: list[BookingKiosk]
    creative_ids: list[int]


def _view(session: Session, booking: Booking) -> BookingView:
    return BookingView(
        booking,
        repo.booking_kiosks(session, [booking.id])[booking.id],
        repo.booking_creative_ids(session, [booking.id])[booking.id],
    )


def _check_creatives(
    session: Session, advertiser_id: int, ids: Iterable[int], kiosks: Sequence[KioskInfo]
) -> list[int]:
    wanted = sorted(set(ids))
    if not wanted:
        raise InvalidBooking("no_creatives", "a booking needs at least one creative")
    found = {c.id: c for c in repo.creatives(session, wanted) if c.advertiser_id == advertiser_id}
    missing = [i for i in wanted if i not in found]
    if missing:  # another advertiser's creative is as unknown as a missing one
        raise NotFound(f"unknown creative(s): {', '.join(map(str, missing))}", creative_ids=missing)
    rejected = [i for i in wanted if found[i].status is CreativeStatus.REJECTED]
    if rejected:
        raise InvalidBooking(
            "creative_rejected",
            f"creative(s) {', '.join(map(str, rejected))} were rejected",
            creative_ids=rejected,
        )
    shortest_ms = min(k.spot_seconds for k in kiosks) * 1000
    too_long = [i for i in wanted if found[i].duration_ms > shortest_ms]
    if too_long:
        raise InvalidBooking(
            "creative_too_long",
            f"creative(s) {', '.join(map(str, too_long))} last longer than a "
            f"{shortest_ms // 1000}-s spot",
            creative_ids=too_long,
        )
    return wanted


def create_booking(session: Session, advertiser_id: int, req: BookingRequest) -> BookingView:
    """A draft with its quote (price per kiosk and total): it reserves nothing yet."""
    parts = _parse(req.dayparts, req.start_date, req.end_date)
    if not req.name.strip():
        raise InvalidBooking("invalid_name", "a booking needs a name")
    if req.spots_per_loop < 1:
        raise InvalidBooking("spots_exceed_capacity", "spots_per_loop must be at least 1")
    kiosks = select_kiosks(session, req.selection)
    creative_ids = _check_creatives(session, advertiser_id, req.creative_ids, kiosks)
    now = clock.now()
    plan = _plan(
        session,
        kiosks,
        spots=req.spots_per_loop,
        start=req.start_date,
        end=req.end_date,
        dayparts=parts,
        now=now,
    )
    booking = Booking(
        advertiser_id=advertiser_id,
        name=req.name.strip(),
        status=BookingStatus.DRAFT,
        spots_per_loop=req.spots_per_loop,
        start_date=req.start_date,
        end_date=req.end_date,
        dayparts=rules.format_dayparts(parts),
        selection=req.selection.as_json(),
        price_fen=plan.total,
        revision=1,
        created_at=now,
        updated_at=now,
    )
    session.add(booking)
    session.flush()
    session.add_all(
        BookingKiosk(booking_id=booking.id, kiosk_id=k.id, days=plan.days[k.id], price_fen=p)
        for k in plan.kiosks
        for p in (plan.price[k.id],)
    )
    session.add_all(BookingCreative(booking_id=booking.id, creative_id=c) for c in creative_ids)
    session.flush()
    return _view(session, booking)


def _own(session: Session, advertiser_id: int | None, booking_id: int, *, lock: bool) -> Booking:
    """The booking if the caller may see it (advertiser_id None = an operator); another
    advertiser's booking is answered exactly like a missing one."""
    booking = repo.get_booking(session, booking_id, lock=lock)
    if booking is None or (advertiser_id is not None and booking.advertiser_id != advertiser_id):
        raise NotFound(f"booking {booking_id} does not exist", booking_id=booking_id)
    return booking


def get_booking(session: Session, advertiser_id: int | None, booking_id: int) -> BookingView:
    return _view(session, _own(session, advertiser_id, booking_id, lock=False))


def list_bookings(
    session: Session,
    advertiser_id: int | None,
    *,
    status: BookingStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[BookingView], int]:
    rows, total = repo.list_bookings(
        session, advertiser_id=advertiser_id, status=status, limit=limit, offset=offset
    )
    ids = [b.id for b in rows]
    kiosks = repo.booking_kiosks(session, ids)
    creatives = repo.booking_creative_ids(session, ids)
    return [BookingView(b, kiosks[b.id], creatives[b.id]) for b in rows], total


def _touch(booking: Booking, status: BookingStatus, now: datetime) -> None:
    booking.status = status
    booking.revision += 1
    booking.updated_at = now


def _expire_if_due(session: Session, booking: Booking, now: datetime) -> None:
    if (
        booking.status is BookingStatus.HELD
        and booking.held_until is not None
        and booking.held_until <= now
    ):
        expire(session, [booking], now)


def _sold_out(full: Sequence[tuple[str, datetime, int, int]], tz: dict[str, str]) -> SoldOut:
    listed = []
    for kiosk_id, starts_at, capacity, sold in full[:MAX_FULL_LISTED]:
        local_date, local_hour = rules.local_label(starts_at, tz[kiosk_id])
        listed.append(
            {
                "kiosk_id": kiosk_id,
                "local_date": local_date.isoformat(),
                "local_hour": local_hour,
                "starts_at": starts_at,
                "free": max(0, capacity - sold),
            }
        )
    kiosks = sorted({f[0] for f in full})
    return SoldOut(
        f"sold out: {len(full)} hour(s) on {len(kiosks)} kiosk(s) have too few free spots",
        kiosk_ids=kiosks,
        full_hours=len(full),
        full=listed,
    )


def _reserve(session: Session, booking: Booking, now: datetime) -> None:
    """Reserve the booking's spots in every future open hour, re-pricing it on what is left
    (hours that have started are not sold). Raises SoldOut naming the full hours."""
    booked = repo.booking_kiosks(session, [booking.id])[booking.id]
    kiosks = repo.select_kiosks(session, ids=[b.kiosk_id for b in booked])
    parts = rules.parse_dayparts(booking.dayparts)
    plan = _plan(
        session,
        kiosks,
        spots=booking.spots_per_loop,
        start=booking.start_date,
        end=booking.end_date,
        dayparts=parts,
        now=now,
    )
    keys = plan.keys()
    capacity = {k.id: k.capacity for k in kiosks}
    repo.ensure_loop_hours(session, [(k, t, capacity[k]) for k, t in keys])
    full = repo.lock_full_hours(session, keys, booking.spots_per_loop)
    if full:
        raise _sold_out(full, {k.id: k.timezone for k in kiosks})
    try:
        repo.add_sold(session, booking.id, keys, booking.spots_per_loop)
        session.flush()
    except IntegrityError as exc:  # the CHECK: someone sold these hours in between
        raise SoldOut(
            "sold out: a loop hour filled up while reserving", kiosk_ids=sorted(capacity)
        ) from exc
    if plan.total != booking.price_fen or any(plan.days[b.kiosk_id] != b.days for b in booked):
        repo.replace_booking_kiosks(
            session,
            booking.id,
            [
                BookingKiosk(booking_id=booking.id, kiosk_id=k, days=plan.days[k], price_fen=p)
                for k, p in plan.price.items()
            ],
        )
        booking.price_fen = plan.total


def hold(
    session: Session, advertiser_id: int, booking_id: int, minutes: int = rules.DEFAULT_HOLD_MINUTES
) -> BookingView:
    """Reserve the spots until now + `minutes`. Holding a booking that is already held
    changes nothing (the hold is not extended): the answer shows its `held_until`."""
    now = clock.now()
    try:
        until = rules.hold_until(now, minutes)
    except rules.RuleError as exc:
        raise _rule_error(exc) from exc
    booking = _own(session, advertiser_id, booking_id, lock=True)
    _expire_if_due(session, booking, now)
    if booking.status is BookingStatus.HELD:
        return _view(session, booking)
    if booking.status not in (BookingStatus.DRAFT, BookingStatus.EXPIRED):
        raise BookingStateConflict(
            f"booking {booking.id} is {booking.status.value}; only a draft or an expired "
            "hold can be held",
            status=booking.status.value,
        )
    _reserve(session, booking, now)
    booking.held_until = until
    booking.ended_at = None
    _touch(booking, BookingStatus.HELD, now)
    session.flush()
    return _view(session, booking)


def confirm(session: Session, advertiser_id: int, booking_id: int) -> tuple[BookingView, bool]:
    """Confirm for good, reserving first unless a live hold already does; (view, changed).
    Confirming a confirmed booking changes nothing."""
    now = clock.now()
    booking = _own(session, advertiser_id, booking_id, lock=True)
    if booking.status is BookingStatus.CONFIRMED:
        return _view(session, booking), False
    _expire_if_due(session, booking, now)
    if booking.status is BookingStatus.RELEASED:
        raise BookingStateConflict(
            f"booking {booking.id} was released; create a new one", status=booking.status.value
        )
    if booking.status is not BookingStatus.HELD:
        _reserve(session, booking, now)
    booking.held_until = None
    booking.ended_at = None
    booking.confirmed_at = now
    _touch(booking, BookingStatus.CONFIRMED, now)
    session.flush()
    from server.billing.service import on_booking_confirmed  # billing imports bookings' models

    on_booking_confirmed(session, booking)
    return _view(session, booking), True


def release(session: Session, advertiser_id: int, booking_id: int) -> BookingView:
    """Give the spots back (draft, held or expired -> released). A confirmed booking is
    sold and billed: releasing it is refused. Releasing twice changes nothing."""
    now = clock.now()
    booking = _own(session, advertiser_id, booking_id, lock=True)
    if booking.status is BookingStatus.RELEASED:
        return _view(session, booking)
    if booking.status is BookingStatus.CONFIRMED:
        raise BookingStateConflict(
            f"booking {booking.id} is confirmed and cannot be released",
            status=booking.status.value,
        )
    if booking.status is BookingStatus.HELD:
        repo.return_reserved(session, [booking.id])
    booking.held_until = None
    booking.ended_at = now
    _touch(booking, BookingStatus.RELEASED, now)
    session.flush()
    return _view(session, booking)


def expire(session: Session, bookings: Sequence[Booking], now: datetime) -> int:
    """Held bookings (locked by the caller) whose hold ran out -> expired, spots returned."""
    due = [b for b in bookings if b.status is BookingStatus.HELD]
    if not due:
        return 0
    repo.return_reserved(session, [b.id for b in due])
    for b in due:
        b.held_until = None
        b.ended_at = now
        _touch(b, BookingStatus.EXPIRED, now)
    session.flush()
    return len(due)


# --- availability ------------------------------------------------------------------------------


@dataclass(slots=True)
class Calendar:
    """The sellable hours shared by kiosks with the same time zone and opening hours."""

    timezone: str
    open_hour: int
    close_hour: int
    hours: list[rules.LocalHour]
    #: epoch seconds of each hour's UTC start -> its position in `hours`
    index: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class KioskAvailability:
    """Arrays over the kiosk's calendar hours. `bookings`: spots per hour of each booking
    the caller may see by id; `others`: spots held by bookings it may not (advertisers)."""

    kiosk_id: str
    calendar: int
    capacity: int
    sold: list[int]
    free: list[int]
    bookings: dict[int, list[int]]
    others: list[int] | None


@dataclass(frozen=True, slots=True)
class Availability:
    start_date: date
    end_date: date
    dayparts: str
    calendars: list[Calendar]
    kiosks: list[KioskAvailability]


def availability(
    session: Session,
    advertiser_id: int | None,
    selection: Selection,
    start: date,
    end: date,
    dayparts: str = "00-24",
) -> Availability:
    """Per kiosk and open local hour: capacity, sold, free, and who holds the sold spots.
    An advertiser (`advertiser_id`) sees its own bookings by id and everyone else's only as
    a count; an operator (None) sees every booking."""
    parts = _parse(dayparts, start, end)
    kiosks = select_kiosks(session, selection)
    expanded = _calendars(kiosks, start, end, parts, None)
    total = sum(len(expanded[_calendar_of(k)]) for k in kiosks)
    if total > rules.MAX_AVAILABILITY_HOURS:
        raise InvalidBooking(
            "query_too_large",
            f"{total} kiosk-hours; ask for at most {rules.MAX_AVAILABILITY_HOURS} at a time",
        )
    calendars: list[Calendar] = []
    number: dict[tuple[str, int, int], int] = {}
    for key, hours in expanded.items():
        number[key] = len(calendars)
        calendars.append(
            Calendar(
                *key,
                hours=hours,
                index={int(h.starts_at.timestamp()): i for i, h in enumerate(hours)},
            )
        )
    out: list[KioskAvailability] = []
    by_id: dict[str, tuple[KioskAvailability, dict[int, int], list[int]]] = {}
    for k in kiosks:
        cal = number[_calendar_of(k)]
        n = len(calendars[cal].hours)
        row = KioskAvailability(
            k.id, cal, k.capacity, [0] * n, [], {}, [0] * n if advertiser_id else None
        )
        out.append(row)
        by_id[k.id] = (row, calendars[cal].index, [k.capacity] * n)
    instants = [h.starts_at for c in calendars for h in c.hours]
    if instants:
        lo, hi = min(instants), max(instants)
        ids = list(by_id)
        for kiosk_id, starts_at, capacity, sold in repo.loop_hour_rows(session, ids, lo, hi):
            row, index, caps = by_id[kiosk_id]
            i = index.get(starts_at)
            if i is not None:
                row.sold[i] = sold
                caps[i] = capacity
        for kiosk_id, starts_at, booking_id, spots in repo.reservation_rows(
            session, ids, lo, hi, advertiser_id=advertiser_id
        ):
            row, index, _ = by_id[kiosk_id]
            i = index.get(starts_at)
            if i is not None:
                held = row.bookings.get(booking_id)
                if held is None:
                    held = row.bookings[booking_id] = [0] * len(row.sold)
                held[i] = spots
    for row, _, caps in by_id.values():
        row.free = [c - s for c, s in zip(caps, row.sold, strict=True)]
        if row.others is not None:
            own = [0] * len(row.sold)
            for held in row.bookings.values():
                own = [a + b for a, b in zip(own, held, strict=True)]
            row.others = [s - o for s, o in zip(row.sold, own, strict=True)]
    return Availability(start, end, rules.format_dayparts(parts), calendars, out)


# --- kiosks' loops -----------------------------------------------------------------------------


def resize_loop(session: Session, kiosk_id: str, capacity: int) -> None:
    """A kiosk's loop now holds `capacity` spots: future loop hours take it on, unless one
    already sold more (then nothing changes and the caller is told which hours)."""
    now = clock.now()
    over = repo.set_capacity_from(
        session, kiosk_id, capacity, now.replace(minute=0, second=0, microsecond=0)
    )
    if over:
        raise Conflict(
            f"kiosk {kiosk_id} has {len(over)} future hour(s) with more than {capacity} spots "
            "sold; the loop cannot shrink below what is sold",
            kiosk_id=kiosk_id,
            hours=[t.isoformat() for t in over[:MAX_FULL_LISTED]],
        )
