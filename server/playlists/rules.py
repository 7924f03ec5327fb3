"""Pure playlist rules. No I/O.

Spot codes: the `creative_id` text a playlist spot carries (firmware_protocol SPEC §4.6)
and every Play echoes back as `cr`. It names the booking as well as the creative, so a
play is attributed without looking anything up, even when one creative runs in two
bookings of the same advertiser:

    b<booking>-c<creative>       a booked spot
    b<booking>-c<creative>-mg    a make-good spot (owed for spots lost to an offline kiosk)
    house-<name>                 house content (unsold spot), never billed

Compiling (SPEC §4 Playlists): one kiosk's playlist covers a window of whole local hours
from the current one. Each open hour gets one loop of `capacity` spots (one more loop per
block when a booking rotates several creatives), built from the confirmed reservations of
that hour, then make-goods in unsold spots, then house content; consecutive identical hours
merge into one block; closed hours get no block (the kiosk shows its idle image). The
result is a pure function of its inputs, so an unchanged compile has the same content hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from firmware_protocol import encode
from firmware_protocol.codec import MAX_DOWNLINK_BYTES
from firmware_protocol.messages import Playlist, PlaylistBlock, PlaylistSpot

_SPOT_RE = re.compile(r"^b(\d{1,18})-c(\d{1,18})(-mg)?$")

BOOKED = "booked"
MAKE_GOOD = "make_good"
HOUSE = "house"
#: Why a booking's spot plays house content instead of the booking's creatives.
NOT_APPROVED = "creative not approved"
#: firmware_protocol codec: at most 360 spots in a block.
MAX_BLOCK_SPOTS = 360
#: A block's spot list holds at most this many loops (creative rotation).
MAX_LOOPS = 6
HOUR = timedelta(hours=1)
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class SpotRef:
    booking_id: int
    creative_id: int
    make_good: bool


def spot_code(booking_id: int, creative_id: int, *, make_good: bool = False) -> str:
    return f"b{booking_id}-c{creative_id}{'-mg' if make_good else ''}"


def house_code(name: str) -> str:
    return f"house-{name}"


def parse_spot_code(code: str) -> SpotRef | None:
    """The booking and creative of a spot code; None for house content or anything else
    (a play of an unknown code is stored but billed to nobody)."""
    m = _SPOT_RE.match(code)
    if m is None:
        return None
    return SpotRef(int(m.group(1)), int(m.group(2)), m.group(3) is not None)


# ---------------------------------------------------------------------- inputs


class Unplayable(ValueError):
    """A kiosk whose loop cannot be expressed as a playlist (e.g. more than 360 spots)."""


@dataclass(frozen=True, slots=True)
class Media:
    url: str
    #: Lowercase hex SHA-256 of the file.
    sha256: str


@dataclass(frozen=True, slots=True)
class HouseItem:
    name: str
    media: Media


@dataclass(frozen=True, slots=True)
class KioskLoop:
    kiosk_id: str
    timezone: str
    loop_seconds: int
    spot_seconds: int
    open_hour: int
    close_hour: int

    @property
    def capacity(self) -> int:
        return self.loop_seconds // self.spot_seconds

    @property
    def loops_per_hour(self) -> int:
        return max(1, 3600 // self.loop_seconds)


@dataclass(frozen=True, slots=True)
class BookingRef:
    booking_id: int
    advertiser_id: int
    #: The booking's dayparts as stored ("07-10,22-02").
    dayparts: str
    #: Approved creatives in rotation order (by id); empty plays house content.
    creatives: tuple[tuple[int, Media], ...]


@dataclass(frozen=True, slots=True)
class HourBooking:
    """One confirmed reservation: `spots` per loop of one local hour."""

    booking: BookingRef
    spots: int


@dataclass(frozen=True, slots=True)
class MakeGoodOwed:
    booking_id: int
    advertiser_id: int
    creatives: tuple[tuple[int, Media], ...]
    #: Plays still owed (one spot shown once).
    plays: int


@dataclass(frozen=True, slots=True)
class Spot:
    """One spot as sent, with the provenance "why does this kiosk play this" answers from."""

    code: str
    rule: str
    media: Media
    booking_id: int | None = None
    advertiser_id: int | None = None
    creative_id: int | None = None
    daypart: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Block:
    start: datetime
    end: datetime
    #: Local wall time the block starts at, ISO 8601 with offset.
    local_start: str
    spots: tuple[Spot, ...]


# ------------------------------------------------------------------ dayparts, hours


def is_open(hour: int, open_hour: int, close_hour: int) -> bool:
    """[open, close) in local whole hours; close < open crosses midnight; 0-24 always."""
    if open_hour % 24 == close_hour % 24:
        return True
    if open_hour < close_hour:
        return open_hour <= hour < close_hour
    return hour >= open_hour or hour < close_hour


@lru_cache(maxsize=4096)
def daypart_of(dayparts: str, hour: int) -> str | None:
    """The "HH-HH" daypart of a booking that contains local `hour` (end exclusive, may
    cross midnight), or None."""
    for part in dayparts.split(","):
        part = part.strip()
        start_s, sep, end_s = part.partition("-")
        if not sep or not start_s.isdigit() or not end_s.isdigit():
            continue
        if is_open(hour, int(start_s), int(end_s)):
            return part
    return None


def window_hours(timezone: str, now: datetime, hours: int) -> list[datetime]:
    """UTC instants at which the next `hours` local hours start, from the current one.

    The current local hour's start is found in local time (so a +05:30 zone starts at :30
    UTC); later hours are whole UTC hours after it, which is where every local hour of a
    zone with whole-hour DST shifts starts too (a repeated local hour comes twice, a
    skipped one never)."""
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz)
    start = local.replace(minute=0, second=0, microsecond=0).astimezone(now.tzinfo)
    return [start + HOUR * i for i in range(hours)]


@lru_cache(maxsize=256)
def _local_window(
    timezone: str, start: datetime, hours: int
) -> tuple[tuple[datetime, int, str], ...]:
    """(UTC start, local hour, local ISO label) of `hours` hours from `start`: the same for
    every kiosk of a time zone in one run, so computed once."""
    tz = ZoneInfo(timezone)
    out = []
    for i in range(hours):
        t = start + HOUR * i
        local = t.astimezone(tz)
        out.append((t, local.hour, local.isoformat(timespec="minutes")))
    return tuple(out)


# ------------------------------------------------------------------ one hour's loop


def swrr(weights: Sequence[tuple[K, int]]) -> list[K]:
    """Smooth weighted round robin: every key `weight` times, each spread as evenly as the
    others allow (the sequence nginx uses to spread upstream picks). Ties go to the key
    listed first, so the result is deterministic."""
    total = sum(w for _, w in weights)
    current = [0] * len(weights)
    out: list[K] = []
    for _ in range(total):
        best = 0
        for i, (_, w) in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= total
        out.append(weights[best][0])
    return out


def separate(seq: list[K], free: K) -> None:
    """Swap positions (in place) until no two neighbours (the last and the first included:
    the loop repeats) hold the same key other than `free`, when the mix allows it: no key
    may fill more than half the loop."""
    n = len(seq)
    if n < 2:
        return
    counts: dict[K, int] = {}
    for k in seq:
        counts[k] = counts.get(k, 0) + 1
    if any(c > n // 2 for k, c in counts.items() if k != free):
        return

    def clash(i: int) -> int:
        a, b = seq[i % n], seq[(i + 1) % n]
        return int(a == b and a != free)

    def around(p: int, j: int) -> int:
        return sum(clash(i) for i in {(p - 1) % n, p, (j - 1) % n, j})

    # Hill-climb: swap a clashing spot with the one that removes the most clashes.
    for _ in range(4 * n):
        bad = [i for i in range(n) if clash(i)]
        if not bad:
            return
        best: tuple[int, int, int] | None = None
        for i in bad:
            for p in (i, (i + 1) % n):
                for j in range(n):
                    if seq[j] == seq[p]:
                        continue
                    before = around(p, j)
                    seq[j], seq[p] = seq[p], seq[j]
                    gain = before - around(p, j)
                    seq[j], seq[p] = seq[p], seq[j]
                    if gain > 0 and (best is None or gain > best[0]):
                        best = (gain, p, j)
        if best is None:
            return
        _, p, j = best
        seq[j], seq[p] = seq[p], seq[j]


def clashes(seq: Sequence[K], free: K) -> int:
    """Neighbours (the loop wraps) holding the same key other than `free`."""
    n = len(seq)
    return sum(1 for i in range(n) if seq[i] == seq[(i + 1) % n] != free) if n > 1 else 0


def interleave(weights: Sequence[tuple[K, int]]) -> list[K]:
    """Keys in the order given (biggest first), laid on the even positions, then the odd
    ones: no key of at most half the loop lands next to itself, the last and first
    positions included. Less even than `swrr`, so only used where that one cannot keep
    advertisers apart (one of them holds about half the loop)."""
    flat = [k for k, w in weights for _ in range(w)]
    n = len(flat)
    out: list[K] = list(flat)
    for i, k in zip([*range(0, n, 2), *range(1, n, 2)], flat, strict=True):
        out[i] = k
    return out


@dataclass(frozen=True, slots=True)
class _Claim:
    """What one entry of an hour claims: `count` spots per loop."""

    rule: str
    booking_id: int
    advertiser_id: int
    creatives: tuple[tuple[int, Media], ...]
    daypart: str | None
    count: int


def _loops_for(claims: Sequence[_Claim], capacity: int) -> int:
    """Enough loops per block that each booking's creatives rotate evenly, if that fits."""
    lcm = 1
    for c in claims:
        if len(c.creatives) > 1:
            lcm = math.lcm(lcm, len(c.creatives))
    limit = max(1, min(MAX_LOOPS, MAX_BLOCK_SPOTS // capacity))
    if lcm <= limit:
        return lcm
    return min(limit, max(len(c.creatives) for c in claims))


@lru_cache(maxsize=65536)
def compile_hour(
    capacity: int, claims: tuple[_Claim, ...], house: tuple[HouseItem, ...], max_loops: int
) -> tuple[Spot, ...]:
    """The spot list of one open hour: one loop per rotation step, each loop the same
    arrangement of advertisers (spread evenly, kept apart), creatives rotating across loops.

    Cached: thousands of kiosks share the same few hours (all house, or one booking's)."""
    booked = sum(c.count for c in claims)
    if booked > capacity:
        raise Unplayable(f"{booked} spots booked in a loop of {capacity}")
    # Advertisers first (the biggest first on ties), house content is the filler.
    per_adv: dict[int, int] = {}
    for c in claims:
        per_adv[c.advertiser_id] = per_adv.get(c.advertiser_id, 0) + c.count
    free_key = -1
    order = sorted(per_adv.items(), key=lambda kv: (-kv[1], kv[0]))
    arrangement = swrr([*order, (free_key, capacity - booked)])
    separate(arrangement, free_key)
    if clashes(arrangement, free_key):
        arrangement = interleave([*order, (free_key, capacity - booked)])
    # Within an advertiser's positions, its entries in turn (each spread evenly among them).
    queues: dict[int, list[int]] = {}
    for adv, _ in order:
        entries = [(i, c.count) for i, c in enumerate(claims) if c.advertiser_id == adv]
        queues[adv] = swrr(entries)
    slot_claim: list[int | None] = []
    for adv in arrangement:
        slot_claim.append(None if adv == free_key else queues[adv].pop(0))

    loops = 1 if not claims else min(max_loops, _loops_for(claims, capacity))
    out: list[Spot] = []
    seen = [0] * len(claims)
    house_i = 0
    for _ in range(loops):
        for idx in slot_claim:
            claim = None if idx is None else claims[idx]
            if idx is not None and claim is not None and claim.creatives:
                creative_id, media = claim.creatives[seen[idx] % len(claim.creatives)]
                seen[idx] += 1
                make_good = claim.rule == MAKE_GOOD
                out.append(
                    Spot(
                        spot_code(claim.booking_id, creative_id, make_good=make_good),
                        claim.rule,
                        media,
                        claim.booking_id,
                        claim.advertiser_id,
                        creative_id,
                        claim.daypart,
                    )
                )
                continue
            item = house[house_i % len(house)]
            house_i += 1
            if claim is None:
                out.append(Spot(house_code(item.name), HOUSE, item.media))
            else:  # booked, but nothing approved to show yet
                out.append(
                    Spot(
                        house_code(item.name),
                        HOUSE,
                        item.media,
                        claim.booking_id,
                        claim.advertiser_id,
                        None,
                        claim.daypart,
                        NOT_APPROVED,
                    )
                )
    return tuple(out)


# ------------------------------------------------------------------ one kiosk


@dataclass(frozen=True, slots=True)
class CompiledPlaylist:
    kiosk_id: str
    starts_at: datetime
    ends_at: datetime
    spot_ms: int
    blocks: tuple[Block, ...]
    #: The stored body (JSON with provenance) and its SHA-256: equal inputs, equal hash.
    body: str
    content_hash: str

    @property
    def spot_count(self) -> int:
        return sum(len(b.spots) for b in self.blocks)

    def message(self, version: int, cmd_id: str, ts_ms: int) -> Playlist:
        return to_message(self.kiosk_id, self.blocks, self.spot_ms, version, cmd_id, ts_ms)


def to_message(
    kiosk_id: str,
    blocks: Sequence[Block],
    spot_ms: int,
    version: int,
    cmd_id: str,
    ts_ms: int,
) -> Playlist:
    """The wire Playlist (firmware_protocol SPEC §4.6)."""
    wire: dict[int, tuple[PlaylistSpot, ...]] = {}
    out: list[PlaylistBlock] = []
    for b in blocks:
        spots = wire.get(id(b.spots))
        if spots is None:
            spots = wire[id(b.spots)] = tuple(
                PlaylistSpot(s.code, spot_ms, s.media.url, bytes.fromhex(s.media.sha256))
                for s in b.spots
            )
        out.append(PlaylistBlock(_ms(b.start), _ms(b.end), spots))
    return Playlist(kiosk_id, 0, ts_ms, cmd_id, version, tuple(out))


def _ms(dt: datetime) -> int:
    return int(dt.timestamp()) * 1000 + dt.microsecond // 1000


def _place_make_goods(
    kiosk: KioskLoop,
    hours: Sequence[tuple[datetime, tuple[HourBooking, ...]] | None],
    owed: Sequence[MakeGoodOwed],
) -> dict[datetime, list[tuple[MakeGoodOwed, int]]]:
    """Make-goods go into unsold spots only, as early as possible: a spot position for one
    hour delivers `loops_per_hour` plays. One advertiser never gets more than half a loop."""
    placed: dict[datetime, list[tuple[MakeGoodOwed, int]]] = {}
    left = {m.booking_id: m.plays for m in owed}
    todo = sorted((m for m in owed if m.creatives and m.plays > 0), key=lambda m: m.booking_id)
    if not todo:
        return placed
    cap, per_hour = kiosk.capacity, kiosk.loops_per_hour
    for entry in hours:
        if entry is None:
            continue
        start, bookings = entry
        free = cap - sum(b.spots for b in bookings)
        per_adv: dict[int, int] = {}
        for b in bookings:
            per_adv[b.booking.advertiser_id] = per_adv.get(b.booking.advertiser_id, 0) + b.spots
        for m in todo:
            units = -(-left[m.booking_id] // per_hour)
            room = cap // 2 - per_adv.get(m.advertiser_id, 0)
            n = max(0, min(units, free, room))
            if n:
                placed.setdefault(start, []).append((m, n))
                free -= n
                per_adv[m.advertiser_id] = per_adv.get(m.advertiser_id, 0) + n
                left[m.booking_id] = max(0, left[m.booking_id] - n * per_hour)
        if all(left[m.booking_id] == 0 for m in todo):
            break
    return placed


def compile_kiosk(
    kiosk: KioskLoop,
    now: datetime,
    hours: int,
    reservations: Mapping[datetime, Sequence[HourBooking]],
    make_goods: Sequence[MakeGoodOwed],
    house: tuple[HouseItem, ...],
    *,
    max_bytes: int = MAX_DOWNLINK_BYTES,
    memo: dict[Hashable, tuple[Spot, ...]] | None = None,
) -> CompiledPlaylist:
    """One kiosk's playlist for the `hours` local hours from the current one.

    `reservations` are keyed by the UTC instant their local hour starts (LoopHour.starts_at).
    When the encoded playlist would exceed the protocol's downlink size, creatives stop
    rotating across loops first, then the window is cut short (hour blocks from the end).

    `memo` may be shared by the kiosks of one batch: it maps an hour's inputs, by the
    identity of the HourBooking and house objects, to its spot list, so it is valid only
    while those objects live (the caller keeps them for the batch)."""
    if memo is None:
        memo = {}
    if kiosk.spot_seconds <= 0 or kiosk.capacity < 1:
        raise Unplayable(f"kiosk {kiosk.kiosk_id}: a loop of {kiosk.loop_seconds} s has no spot")
    if kiosk.capacity > MAX_BLOCK_SPOTS:
        raise Unplayable(f"kiosk {kiosk.kiosk_id}: {kiosk.capacity} spots per loop > 360")
    if not house:
        raise Unplayable("no house content to fill unsold spots")
    local = _local_window(kiosk.timezone, window_hours(kiosk.timezone, now, 1)[0], hours)
    instants = [t for t, _, _ in local]
    open_hours: list[tuple[datetime, tuple[HourBooking, ...]] | None] = []
    for t, hour, _ in local:
        if is_open(hour, kiosk.open_hour, kiosk.close_hour):
            got = reservations.get(t, ())
            if len(got) > 1:
                got = sorted(got, key=lambda b: b.booking.booking_id)
            open_hours.append((t, tuple(got)))
        else:
            open_hours.append(None)
    hour_of = {t: (hour, label) for t, hour, label in local}
    placed = _place_make_goods(kiosk, open_hours, make_goods)

    def build(max_loops: int) -> list[Block]:
        runs: list[list[Any]] = []  # [start, end, local label, spots]
        cap = kiosk.capacity
        for entry in open_hours:
            if entry is None:
                continue
            t, bookings = entry
            goods = placed.get(t) if placed else None
            hour, label = hour_of[t]
            parts = tuple([daypart_of(b.booking.dayparts, hour) for b in bookings])
            # Hours with make-goods are not memoised: those objects live for one kiosk only.
            key = (cap, max_loops, id(house), tuple(map(id, bookings)), parts)
            spots = None if goods else memo.get(key)
            if spots is None:
                claims = [
                    _Claim(
                        BOOKED,
                        b.booking.booking_id,
                        b.booking.advertiser_id,
                        b.booking.creatives,
                        part,
                        b.spots,
                    )
                    for b, part in zip(bookings, parts, strict=True)
                ]
                claims += [
                    _Claim(MAKE_GOOD, m.booking_id, m.advertiser_id, m.creatives, None, n)
                    for m, n in goods or ()
                ]
                spots = compile_hour(cap, tuple(claims), house, max_loops)
                if not goods:
                    memo[key] = spots
            if runs and runs[-1][1] == t and (runs[-1][3] is spots or runs[-1][3] == spots):
                runs[-1][1] = t + HOUR
            else:
                runs.append([t, t + HOUR, label, spots])
        return [Block(*r) for r in runs]

    spot_ms = kiosk.spot_seconds * 1000
    start, end = instants[0], instants[-1] + HOUR
    blocks = build(MAX_LOOPS)
    if not _fits(kiosk.kiosk_id, blocks, spot_ms, max_bytes):
        blocks = build(1)
        if not _fits(kiosk.kiosk_id, blocks, spot_ms, max_bytes):
            blocks = _fit(kiosk.kiosk_id, blocks, spot_ms, max_bytes)
            end = blocks[-1].end if blocks else start
    body = to_body(kiosk.kiosk_id, kiosk.timezone, start, end, spot_ms, blocks)
    digest = hashlib.sha256(body.encode()).hexdigest()
    return CompiledPlaylist(kiosk.kiosk_id, start, end, spot_ms, tuple(blocks), body, digest)


#: Room for the envelope fields a real message carries beyond the size probe's.
_ENVELOPE_SLACK = 160


def _size(kiosk_id: str, blocks: Sequence[Block], spot_ms: int) -> int:
    msg = to_message(kiosk_id, blocks, spot_ms, 2**32 - 1, "", 2**47)
    return len(encode(msg)) + _ENVELOPE_SLACK


def _fits(kiosk_id: str, blocks: Sequence[Block], spot_ms: int, max_bytes: int) -> bool:
    """Whether the message fits; encoded only when a cheap upper bound says it might not
    (CBOR: a block's head and times take under 24 bytes; a spot's array head, duration and
    string heads under 16, plus its texts and its 32-byte digest)."""
    per_list: dict[int, int] = {}
    bound = _ENVELOPE_SLACK + 16
    for b in blocks:
        n = per_list.get(id(b.spots))
        if n is None:
            n = per_list[id(b.spots)] = sum(
                48 + len(s.code.encode()) + len(s.media.url.encode()) for s in b.spots
            )
        bound += 24 + n
    return bound <= max_bytes or _size(kiosk_id, blocks, spot_ms) <= max_bytes


def _fit(kiosk_id: str, blocks: list[Block], spot_ms: int, max_bytes: int) -> list[Block]:
    """The longest prefix of `blocks` whose message fits in `max_bytes`."""
    lo, hi = 0, len(blocks)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _size(kiosk_id, blocks[:mid], spot_ms) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    return blocks[:lo]


# ------------------------------------------------------------------ stored body


def to_body(
    kiosk_id: str,
    timezone: str,
    start: datetime,
    end: datetime,
    spot_ms: int,
    blocks: Sequence[Block],
) -> str:
    """Canonical JSON of a compiled playlist: a catalog of distinct spots (with provenance)
    and blocks listing catalog indices, so the body stays small and its bytes are stable."""
    index: dict[Spot, int] = {}
    # Lists shared by several blocks (merged hours of one kiosk, one cached hour) are
    # indexed once; the catalog itself is keyed by value, so the bytes do not depend on
    # which equal objects the caller passed.
    by_list: dict[int, list[int]] = {}
    catalog: list[dict[str, Any]] = []
    out_blocks = []
    for b in blocks:
        known = by_list.get(id(b.spots))
        if known is not None:
            out_blocks.append(
                {
                    "start_ms": _ms(b.start),
                    "end_ms": _ms(b.end),
                    "local_start": b.local_start,
                    "spots": known,
                }
            )
            continue
        ids = by_list[id(b.spots)] = []
        for s in b.spots:
            i = index.get(s)
            if i is None:
                i = index[s] = len(catalog)
                catalog.append(
                    {
                        "code": s.code,
                        "rule": s.rule,
                        "media_url": s.media.url,
                        "sha256": s.media.sha256,
                        "booking_id": s.booking_id,
                        "advertiser_id": s.advertiser_id,
                        "creative_id": s.creative_id,
                        "daypart": s.daypart,
                        "note": s.note,
                    }
                )
            ids.append(i)
        out_blocks.append(
            {
                "start_ms": _ms(b.start),
                "end_ms": _ms(b.end),
                "local_start": b.local_start,
                "spots": ids,
            }
        )
    body = {
        "kiosk_id": kiosk_id,
        "timezone": timezone,
        "starts_ms": _ms(start),
        "ends_ms": _ms(end),
        "spot_ms": spot_ms,
        "catalog": catalog,
        "blocks": out_blocks,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class StoredPlaylist:
    kiosk_id: str
    spot_ms: int
    blocks: tuple[Block, ...]


def from_body(body: str) -> StoredPlaylist:
    """The blocks of a stored body (inverse of `to_body`)."""
    data = json.loads(body)
    catalog = [
        Spot(
            c["code"],
            c["rule"],
            Media(c["media_url"], c["sha256"]),
            c["booking_id"],
            c["advertiser_id"],
            c["creative_id"],
            c["daypart"],
            c["note"],
        )
        for c in data["catalog"]
    ]
    blocks = tuple(
        Block(
            _from_ms(b["start_ms"]),
            _from_ms(b["end_ms"]),
            b["local_start"],
            tuple(catalog[i] for i in b["spots"]),
        )
        for b in data["blocks"]
    )
    return StoredPlaylist(data["kiosk_id"], int(data["spot_ms"]), blocks)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class OnScreen:
    block: Block
    index: int
    spot: Spot
    starts_at: datetime
    ends_at: datetime


def on_screen(playlist: StoredPlaylist, at: datetime) -> OnScreen | None:
    """The spot a kiosk playing `playlist` in step with the clock shows at `at`: its block,
    and the position in the block's loop from the block's start and the spot durations."""
    block = next((b for b in playlist.blocks if b.start <= at < b.end), None)
    if block is None or not block.spots:
        return None
    cycle_ms = playlist.spot_ms * len(block.spots)
    offset_ms = (_ms(at) - _ms(block.start)) % cycle_ms
    index = offset_ms // playlist.spot_ms
    started = at - timedelta(milliseconds=offset_ms % playlist.spot_ms)
    return OnScreen(
        block,
        index,
        block.spots[index],
        started,
        started + timedelta(milliseconds=playlist.spot_ms),
    )
