"""Delivery use cases: proof of play from the bridge, settlement of kiosk-days into
make-goods or credits, delivery reports, and what make-goods the playlist compiler owes.
Flushes, never commits (CONVENTIONS: transactions belong to the edge)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session

from firmware_protocol.messages import Play
from server.core.errors import DomainError, NotFound
from server.delivery import repository as repo
from server.delivery import rules
from server.delivery.repository import DayKey
from server.models import Booking, BookingStatus, LostSpotPolicy
from server.playlists.rules import parse_spot_code

log = logging.getLogger(__name__)

#: Longest range one report covers.
MAX_REPORT_DAYS = 366


class InvalidDateRange(DomainError):
    code = "invalid_date_range"


# ---------------------------------------------------------------- proof of play


def record_plays(session: Session, plays: Sequence[tuple[Play, datetime]]) -> None:
    """Store newly received plays (the bridge's `PlayHook`, in the batch's transaction).

    A play id already stored (the kiosk re-sent it under another seq, or two bridges got the
    same message) is dropped by the primary key. A play is attributed to a booking only when
    its spot code names a booking that bought this kiosk; anything else is stored
    unattributed and billed to nobody. Bad data never raises here: one kiosk's garbage must
    not fail the whole batch."""
    if not plays:
        return
    kiosk_ids = {p.kiosk_id for p, _ in plays}
    clocks = repo.kiosk_clocks(session, kiosk_ids)
    refs = {p.creative_id: parse_spot_code(p.creative_id) for p, _ in plays}
    pairs = repo.booking_kiosk_pairs(
        session, {r.booking_id for r in refs.values() if r is not None}, kiosk_ids
    )

    rows: dict[str, dict[str, object]] = {}
    #: play id -> (day it counts for, is a make-good) for the attributed ones
    counts_for: dict[str, tuple[DayKey, bool]] = {}
    repeated = 0
    for play, received_at in plays:
        play_id = play.play_id.hex()
        if play_id in rows:
            repeated += 1
            continue
        if play.kiosk_id not in clocks:  # the bridge rejects unknown kiosks before this
            continue
        tz_name, skew_ms = clocks[play.kiosk_id]
        started_at = rules.server_time(play.started_ms, skew_ms)
        day = rules.local_date(started_at, rules.zone(tz_name))
        ref = refs[play.creative_id]
        if ref is not None and (ref.booking_id, play.kiosk_id) not in pairs:
            ref = None
        if ref is not None:
            counts_for[play_id] = ((ref.booking_id, play.kiosk_id, day), ref.make_good)
        rows[play_id] = {
            "id": play_id,
            "kiosk_id": play.kiosk_id,
            "code": play.creative_id[:64],
            "booking_id": None if ref is None else ref.booking_id,
            "creative_id": None if ref is None else ref.creative_id,
            "make_good": False if ref is None else ref.make_good,
            "started_at": started_at,
            "local_date": day,
            "duration_ms": play.duration_ms,
            "playlist_version": play.playlist_version,
            "received_at": received_at,
        }

    new_ids = repo.insert_plays(session, list(rows.values()))
    increments: dict[DayKey, tuple[int, int]] = {}
    for play_id in new_ids:
        if play_id not in counts_for:
            continue
        key, make_good = counts_for[play_id]
        played, mg = increments.get(key, (0, 0))
        increments[key] = (played, mg + 1) if make_good else (played + 1, mg)
    repo.add_to_days(session, increments)
    unattributed = sum(1 for play_id in new_ids if play_id not in counts_for)

    duplicates = repeated + len(rows) - len(new_ids)
    if duplicates:
        log.info("dropped %d duplicate play(s) of %d received", duplicates, len(plays))
    if unattributed:
        log.info("stored %d play(s) billed to no booking", unattributed)
    session.flush()


# ---------------------------------------------------------------- settlement


def _booked_by_day(
    rows: Sequence[repo.ReservationRow],
) -> tuple[dict[DayKey, int], dict[str, str]]:
    """Booked spots per (booking, kiosk, local day), and each kiosk's time zone."""
    booked: dict[DayKey, int] = defaultdict(int)
    zones: dict[str, str] = {}
    for booking_id, kiosk_id, starts_at, spots, loop_seconds, tz_name, _ in rows:
        zones[kiosk_id] = tz_name
        day = rules.local_date(starts_at, rules.zone(tz_name))
        booked[(booking_id, kiosk_id, day)] += rules.booked_spots(spots, loop_seconds)
    return booked, zones


def settle(session: Session, now: datetime, *, grace: timedelta, lookback_days: int) -> int:
    """Settle every kiosk-day whose local day ended at least `grace` ago and that started
    no earlier than `lookback_days` before that; returns how many days it settled.

    lost = booked - played (never below 0). The advertiser's contract turns it into a
    MakeGood (spots owed) or an AdCredit (the lost share of that kiosk-day's price,
    rules.credit_fen). Safe to run often and from several schedulers: a day is settled by
    the one run that flips its `settled_at` under a row lock, and the make-good/credit rows
    are unique per day besides."""
    cutoff = now - grace
    window_start = cutoff - timedelta(days=lookback_days)
    rows = repo.confirmed_reservations(session, window_start, cutoff)
    booked, zones = _booked_by_day(rows)
    due: dict[DayKey, int] = {}
    for (booking_id, kiosk_id, day), spots in booked.items():
        tz = rules.zone(zones[kiosk_id])
        day_start, _ = rules.local_day_bounds(day, tz)
        # A day that began before the window may have hours outside it: an earlier run
        # settled it (or the lookback is too short for the scheduler's downtime).
        if day_start >= window_start and rules.settleable(day, tz, now, grace):
            due[(booking_id, kiosk_id, day)] = spots
    if due:
        done = repo.settled_keys(session, min(d for *_, d in due), max(d for *_, d in due))
        due = {key: spots for key, spots in due.items() if key not in done}
    if not due:
        return 0

    repo.ensure_days(session, due.keys())
    booking_ids = {b for b, _, _ in due}
    first = min(d for _, _, d in due)
    last = max(d for _, _, d in due)
    policies = repo.contracts(session, booking_ids)
    prices = repo.kiosk_prices(session, booking_ids)
    advertisers = {r.booking_id: r.advertiser_id for r in rows}
    make_goods: list[dict[str, object]] = []
    credits: list[dict[str, object]] = []
    settled = 0
    for tally in repo.lock_unsettled_days(session, booking_ids, first, last):
        key = (tally.booking_id, tally.kiosk_id, tally.local_date)
        if key not in due:
            continue
        spots = due[key]
        lost = rules.lost_spots(spots, tally.played)
        tally.booked, tally.lost, tally.settled_at = spots, lost, now
        settled += 1
        if lost == 0:
            continue
        if policies[tally.booking_id] is LostSpotPolicy.MAKE_GOOD:
            make_goods.append(
                {
                    "booking_id": tally.booking_id,
                    "kiosk_id": tally.kiosk_id,
                    "local_date": tally.local_date,
                    "spots_owed": lost,
                    "created_at": now,
                }
            )
        else:
            price_fen, days = prices.get((tally.booking_id, tally.kiosk_id), (0, 1))
            credits.append(
                {
                    "advertiser_id": advertisers[tally.booking_id],
                    "booking_id": tally.booking_id,
                    "kiosk_id": tally.kiosk_id,
                    "local_date": tally.local_date,
                    "spots": lost,
                    "amount_fen": int(rules.credit_fen(price_fen, days, spots, lost)),
                    "created_at": now,
                }
            )
    session.flush()
    repo.insert_make_goods(session, make_goods)
    repo.insert_credits(session, credits)
    session.flush()
    if settled:
        log.info(
            "settled %d kiosk-day(s): %d make-good(s), %d credit(s)",
            settled,
            len(make_goods),
            len(credits),
        )
    return settled


# ---------------------------------------------------------------- make-goods


@dataclass(frozen=True, slots=True)
class MakeGoodDue:
    """Spots a booking is still owed on one kiosk, and the approved creatives to fill them."""

    booking_id: int
    advertiser_id: int
    creative_ids: tuple[int, ...]
    spots_remaining: int


def make_goods_due(session: Session, kiosk_ids: Sequence[str]) -> dict[str, list[MakeGoodDue]]:
    """kiosk id -> the make-goods to schedule there, by booking id; kiosks owing nothing are
    absent. Remaining = spots owed - make-good plays so far. A booking with no approved
    creative left is skipped: there is nothing to play for it (it stays owed)."""
    balances = repo.make_good_balances(session, kiosk_ids)
    creatives = repo.approved_creatives(session, {b for b, _, _, _ in balances})
    out: dict[str, list[MakeGoodDue]] = {}
    for booking_id, kiosk_id, advertiser_id, remaining in balances:
        ids = creatives.get(booking_id)
        if ids:
            out.setdefault(kiosk_id, []).append(
                MakeGoodDue(booking_id, advertiser_id, tuple(ids), remaining)
            )
    return out


# ---------------------------------------------------------------- reports


@dataclass(frozen=True, slots=True)
class DeliveryLine:
    """One kiosk-day of one booking. played + lost + pending == booked."""

    kiosk_id: str
    local_date: date
    booked: int
    played: int
    extra: int
    pending: int
    lost: int
    settled: bool
    make_good_owed: int
    make_good_played: int
    credited_fen: int


@dataclass(frozen=True, slots=True)
class DeliveryTotals:
    booked: int
    played: int
    extra: int
    pending: int
    lost: int
    make_good_owed: int
    make_good_played: int
    credited_fen: int


@dataclass(frozen=True, slots=True)
class BookingDelivery:
    booking_id: int
    advertiser_id: int
    name: str
    status: BookingStatus
    lines: list[DeliveryLine]
    totals: DeliveryTotals


def _totals(lines: Collection[DeliveryLine]) -> DeliveryTotals:
    return DeliveryTotals(
        booked=sum(x.booked for x in lines),
        played=sum(x.played for x in lines),
        extra=sum(x.extra for x in lines),
        pending=sum(x.pending for x in lines),
        lost=sum(x.lost for x in lines),
        make_good_owed=sum(x.make_good_owed for x in lines),
        make_good_played=sum(x.make_good_played for x in lines),
        credited_fen=sum(x.credited_fen for x in lines),
    )


def _check_range(first: date | None, last: date | None) -> None:
    if first is not None and last is not None:
        if first > last:
            raise InvalidDateRange(
                f"from ({first}) is after to ({last})",
                first=first.isoformat(),
                last=last.isoformat(),
            )
        if (last - first).days + 1 > MAX_REPORT_DAYS:
            raise InvalidDateRange(
                f"a report covers at most {MAX_REPORT_DAYS} days", max_days=MAX_REPORT_DAYS
            )


def _reports(
    session: Session, bookings: Sequence[Booking], first: date | None, last: date | None
) -> list[BookingDelivery]:
    if not bookings:
        return []
    ids = {b.id for b in bookings}
    span_first = first or min(b.start_date for b in bookings)
    span_last = last or max(b.end_date for b in bookings)
    # Every time zone is within a day of UTC: this UTC window holds every reserved hour of
    # the local days asked for; the exact local day is computed per row.
    rows = repo.confirmed_reservations(
        session,
        datetime.combine(span_first - timedelta(days=1), datetime.min.time(), tzinfo=UTC),
        datetime.combine(span_last + timedelta(days=2), datetime.min.time(), tzinfo=UTC),
        booking_ids=ids,
    )
    booked, _ = _booked_by_day(rows)
    if first is not None or last is not None:
        booked = {
            k: v
            for k, v in booked.items()
            if (first is None or k[2] >= first) and (last is None or k[2] <= last)
        }
    days = {
        (d.booking_id, d.kiosk_id, d.local_date): d for d in repo.days_of(session, ids, first, last)
    }
    owed: dict[DayKey, int] = defaultdict(int)
    for mg in repo.make_goods_of(session, ids, first, last):
        owed[(mg.booking_id, mg.kiosk_id, mg.local_date)] += mg.spots_owed
    credited: dict[DayKey, int] = defaultdict(int)
    for c in repo.credits_of(session, ids, first, last):
        credited[(c.booking_id, c.kiosk_id, c.local_date)] += c.amount_fen

    lines: dict[int, list[DeliveryLine]] = defaultdict(list)
    for key in sorted(set(booked) | set(days) | set(owed) | set(credited)):
        booking_id, kiosk_id, day = key
        tally = days.get(key)
        count = rules.day_count(
            booked_now=booked.get(key, 0),
            played=tally.played if tally else 0,
            settled_booked=tally.booked if tally and tally.settled_at else None,
            settled_lost=tally.lost if tally and tally.settled_at else None,
        )
        lines[booking_id].append(
            DeliveryLine(
                kiosk_id=kiosk_id,
                local_date=day,
                booked=count.booked,
                played=count.played,
                extra=count.extra,
                pending=count.pending,
                lost=count.lost,
                settled=count.settled,
                make_good_owed=owed.get(key, 0),
                make_good_played=tally.make_good_played if tally else 0,
                credited_fen=credited.get(key, 0),
            )
        )
    return [
        BookingDelivery(
            booking_id=b.id,
            advertiser_id=b.advertiser_id,
            name=b.name,
            status=b.status,
            lines=lines[b.id],
            totals=_totals(lines[b.id]),
        )
        for b in sorted(bookings, key=lambda b: b.id)
    ]


def booking_delivery(
    session: Session,
    booking_id: int,
    *,
    advertiser_id: int | None,
    first: date | None = None,
    last: date | None = None,
) -> BookingDelivery:
    """One booking's delivery per kiosk and local day. `advertiser_id` None is an operator;
    otherwise another advertiser's booking is not found (its id does not leak)."""
    _check_range(first, last)
    booking = repo.booking(session, booking_id)
    if booking is None or (advertiser_id is not None and booking.advertiser_id != advertiser_id):
        raise NotFound(f"booking {booking_id} does not exist", booking_id=booking_id)
    return _reports(session, [booking], first, last)[0]


def advertiser_delivery(
    session: Session, advertiser_id: int, first: date, last: date
) -> list[BookingDelivery]:
    """Every booking of the advertiser, with its kiosk-days in [first, last]."""
    _check_range(first, last)
    bookings = repo.bookings_of(session, advertiser_id)
    reports = _reports(session, bookings, first, last)
    dates = {b.id: (b.start_date, b.end_date) for b in bookings}
    return [
        r
        for r in reports
        if r.lines or (dates[r.booking_id][0] <= last and dates[r.booking_id][1] >= first)
    ]
