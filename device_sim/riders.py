"""Simulated riders: the mini-program's calls over real HTTP, against the public rider API.

A rider logs in with a `wx.login` code the WeChat stand-in issues, pays the 30-yuan deposit
(the stand-in "pays" the JSAPI prepay order the way `wx.requestPayment` would, WeChat Pay
notifies the server, and the rider waits until `GET /riders/me` shows the deposit held),
rents at a nearby kiosk with an umbrella, keeps it a while, walks somewhere else and pushes
it into a free slot of a kiosk near there (the simulated kiosk reads the tag and reports the
insert), and after a few trips some riders withdraw the deposit. Like the kiosks, riders
import nothing from `server/`: they know what the API and the kiosks show them.

The pure part, what a rider does next (`decide`), what an answer did to it (`transition`),
which answers are expected in a busy network (`classify_error`), which kiosk to walk to
(`pick_kiosk`), is separate from the I/O (`Rider.step`) and unit-tested without a server.

`RiderCrowd` runs N riders on a few worker threads: each step is one short piece of work
(one or two requests); between steps a rider waits on a timer heap, so hundreds of riders
need no more threads than the pool. Dwell times are compressed: seconds, not hours
(`RiderTiming.pace` compresses them further). A rider who is done (left, or withdrew the
deposit) is replaced by a new one, so the crowd keeps its size until `stop()`, which makes
every rider holding an umbrella return it and waits for the server to confirm.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import itertools
import logging
import math
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx

log = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_000.0
#: How far a rider looks for a kiosk, widening when nothing is found nearer.
SEARCH_RADII_M: tuple[float, ...] = (800.0, 2_000.0, 5_000.0, 15_000.0)
#: Rent refusals a busy network produces (the API's error `code`s; SPEC §2: "the rider gets
#: a clear reason"): a kiosk that dropped offline or did not answer in time, an umbrella
#: taken by someone else a moment earlier, a jammed lock, an umbrella nobody took.
EXPECTED_RENT_FAILURES: frozenset[str] = frozenset(
    {
        "kiosk_offline",
        "kiosk_timeout",
        "no_umbrella_available",
        "slots_jammed",
        "umbrella_not_taken",
        "kiosk_refused",
    }
)
#: WeChat's transient login refusals (code2session rate limit, system busy).
EXPECTED_LOGIN_STATUS: frozenset[int] = frozenset({429, 503})


class Phase(enum.StrEnum):
    NEW = "new"
    """Not logged in yet."""
    NO_DEPOSIT = "no_deposit"
    PAYING = "paying"
    """Paid at WeChat; waiting for the server to see WeChat Pay's notification."""
    READY = "ready"
    """Deposit held, no umbrella."""
    RIDING = "riding"
    RETURNING = "returning"
    """The umbrella is in a slot; waiting for the server to end the rental."""
    WITHDRAWING = "withdrawing"
    DONE = "done"


class Action(enum.StrEnum):
    LOGIN = "login"
    PAY_DEPOSIT = "pay_deposit"
    CHECK_DEPOSIT = "check_deposit"
    RENT = "rent"
    RETURN = "return"
    CHECK_RETURN = "check_return"
    WITHDRAW = "withdraw"
    CHECK_REFUND = "check_refund"
    LEAVE = "leave"


@dataclass(frozen=True, slots=True)
class Result:
    """What one step's requests came to: done (`ok`), nothing yet (`wait`), or `fail`."""

    kind: Literal["ok", "wait", "fail"]
    reason: str | None = None
    expected: bool = True


OK = Result("ok")
WAIT = Result("wait")


def fail(reason: str, *, expected: bool) -> Result:
    return Result("fail", reason, expected)


@dataclass(frozen=True, slots=True)
class RiderTiming:
    """Dwell times in seconds, each drawn uniformly from its range and divided by `pace`."""

    pace: float = 1.0
    #: Between two trips (and before the first one).
    idle_s: tuple[float, float] = (3.0, 12.0)
    #: How long a rider keeps the umbrella.
    hold_s: tuple[float, float] = (5.0, 20.0)
    #: Tapping through the mini-program between two screens.
    think_s: tuple[float, float] = (0.3, 1.5)
    #: Before trying again after a refused rent or a failed request.
    retry_s: tuple[float, float] = (1.0, 4.0)
    #: Polling the API while waiting for the server (never compressed).
    poll_s: float = 0.3
    #: Trips a rider makes before leaving (inclusive range).
    trips: tuple[int, int] = (1, 3)
    #: Share of riders who withdraw the deposit after their last trip.
    withdraw_share: float = 0.3
    #: Refused rents in a row before the rider gives up that trip.
    max_rent_attempts: int = 3
    #: A deposit still pending after this many polls is refreshed (`POST .../refresh`), as
    #: the mini-program does after `wx.requestPayment` succeeds.
    refresh_after_polls: int = 10
    #: A deposit still pending after this long: the rider pays again (counted unexpected).
    deposit_confirm_within_s: float = 30.0
    #: A return the API has not seen after this long counts as unexpected (once).
    return_seen_within_s: float = 30.0
    #: A refund not settled after this long: the rider stops watching (counted).
    refund_watch_s: float = 30.0

    def __post_init__(self) -> None:
        if self.pace <= 0:
            raise ValueError("pace must be positive")

    def draw(self, span: tuple[float, float], rng: random.Random) -> float:
        return rng.uniform(*span) / self.pace


@dataclass(slots=True)
class RiderState:
    """Everything `decide` and `transition` look at; no I/O handles."""

    phase: Phase = Phase.NEW
    trips_planned: int = 1
    trips_done: int = 0
    withdraw_at_end: bool = False
    rent_failures: int = 0
    """Refused rents in a row for the current trip."""
    polls: int = 0
    """Polls in the current waiting phase (deposit, return, refund)."""
    deposit_attempts: int = 0


def new_state(timing: RiderTiming, rng: random.Random) -> RiderState:
    return RiderState(
        trips_planned=rng.randint(*timing.trips),
        withdraw_at_end=rng.random() < timing.withdraw_share,
    )


def decide(state: RiderState, stopping: bool) -> Action:
    """What the rider does next. When the crowd is stopping, nobody starts anything new:
    a rider with an umbrella returns it, one whose payment or return is under way waits for
    the server, everyone else leaves."""
    match state.phase:
        case Phase.NEW:
            return Action.LEAVE if stopping else Action.LOGIN
        case Phase.NO_DEPOSIT:
            return Action.LEAVE if stopping else Action.PAY_DEPOSIT
        case Phase.PAYING:
            return Action.CHECK_DEPOSIT
        case Phase.READY:
            if stopping:
                return Action.LEAVE
            if state.trips_done < state.trips_planned:
                return Action.RENT
            return Action.WITHDRAW if state.withdraw_at_end else Action.LEAVE
        case Phase.RIDING:
            return Action.RETURN
        case Phase.RETURNING:
            return Action.CHECK_RETURN
        case Phase.WITHDRAWING:
            return Action.CHECK_REFUND
        case Phase.DONE:
            return Action.LEAVE


def transition(
    state: RiderState, action: Action, result: Result, timing: RiderTiming, rng: random.Random
) -> float:
    """Apply a step's result to `state`; returns the seconds until the rider's next step."""
    retry = timing.draw(timing.retry_s, rng)
    if result.kind == "wait":
        state.polls += 1
        return timing.poll_s
    state.polls = 0
    ok = result.kind == "ok"
    match action:
        case Action.LOGIN:
            if ok:
                state.phase = Phase.NO_DEPOSIT
                return timing.draw(timing.think_s, rng)
            return retry
        case Action.PAY_DEPOSIT:
            # A failed request is retried with the same Idempotency-Key: if it did reach
            # the server, the retry finds that payment rather than starting a second one.
            if ok:
                state.phase = Phase.PAYING
                return timing.poll_s
            return retry
        case Action.CHECK_DEPOSIT:
            if ok:
                state.phase = Phase.READY
                return timing.draw(timing.think_s, rng)
            state.phase = Phase.NO_DEPOSIT  # pay again, with a new Idempotency-Key
            state.deposit_attempts += 1
            return retry
        case Action.RENT:
            if ok:
                state.phase = Phase.RIDING
                state.rent_failures = 0
                return timing.draw(timing.hold_s, rng)
            state.rent_failures += 1
            if state.rent_failures >= timing.max_rent_attempts:
                state.rent_failures = 0
                state.trips_done += 1  # gives up this trip
                return timing.draw(timing.idle_s, rng)
            return retry
        case Action.RETURN:
            if ok:
                state.phase = Phase.RETURNING
                return timing.poll_s
            return retry
        case Action.CHECK_RETURN:
            state.phase = Phase.READY
            state.trips_done += 1
            return timing.draw(timing.idle_s, rng)
        case Action.WITHDRAW:
            state.phase = Phase.WITHDRAWING if ok else Phase.DONE
            return timing.poll_s
        case Action.CHECK_REFUND | Action.LEAVE:
            state.phase = Phase.DONE
            return 0.0


def classify_error(action: Action, status: int, body: object) -> Result:
    """An error answer as a failure reason (the API's `error` code, else the status), and
    whether a busy network produces it (expected) or it points at a bug (unexpected)."""
    code = body.get("error") if isinstance(body, Mapping) else None
    code = code if isinstance(code, str) and code else None
    reason = code or f"http_{status}"
    if action is Action.RENT:
        return fail(reason, expected=status in (409, 504) and reason in EXPECTED_RENT_FAILURES)
    if action is Action.LOGIN:
        return fail(reason, expected=status in EXPECTED_LOGIN_STATUS)
    if action is Action.WITHDRAW and status == 404 and code is None:
        # The endpoint is not there (an older server): tolerated, counted on its own.
        return fail("withdraw_unavailable", expected=True)
    return fail(reason, expected=False)


@dataclass(frozen=True, slots=True)
class KioskChoice:
    kiosk_id: str
    lat: float
    lon: float


def pick_kiosk(
    items: Sequence[Mapping[str, Any]],
    known: Collection[str],
    rng: random.Random,
    *,
    need: Literal["umbrella", "free_slot"],
    avoid: Collection[str] = (),
    nearest: int = 3,
) -> KioskChoice | None:
    """One of the `nearest` kiosks of a `/kiosks/nearby` answer (nearest first) that the
    simulation can walk to (`known`), still shows what the rider needs, and is not one the
    rider just failed at. Riders do not all crowd the single nearest kiosk."""
    key = "umbrellas" if need == "umbrella" else "free_slots"
    fit = [
        i
        for i in items
        if i.get("id") in known and i.get("id") not in avoid and int(i.get(key) or 0) > 0
    ][:nearest]
    if not fit:
        return None
    chosen = rng.choice(fit)
    return KioskChoice(str(chosen["id"]), float(chosen["lat"]), float(chosen["lon"]))


def random_point(
    center: tuple[float, float], radius_m: float, rng: random.Random
) -> tuple[float, float]:
    """A point uniformly spread over the disc of `radius_m` around `center` (lat, lon)."""
    r = radius_m * math.sqrt(rng.random())
    theta = rng.random() * 2 * math.pi
    dlat = math.degrees(r * math.cos(theta) / EARTH_RADIUS_M)
    dlon = math.degrees(r * math.sin(theta) / EARTH_RADIUS_M) / max(
        math.cos(math.radians(center[0])), 1e-9
    )
    return round(center[0] + dlat, 6), round(center[1] + dlon, 6)


def openid_for(name: str) -> str:
    """A stable, openid-shaped id per simulated rider (the stand-in issues codes for it)."""
    return "o" + hashlib.sha256(name.encode()).hexdigest()[:27]


# ------------------------------------------------------------------------------- the world


class KioskSlots(Protocol):
    """What a rider standing at a simulated kiosk can do (`device_sim.fleet.KioskHandle`)."""

    def empty_slots(self) -> list[int]: ...

    def insert_umbrella(self, slot: int, tag: bytes) -> object: ...


class KioskWorld(Protocol):
    """The simulated kiosks riders can walk to (`device_sim.fleet.Fleet`)."""

    @property
    def kiosk_ids(self) -> list[str]: ...

    def kiosk(self, kiosk_id: str) -> KioskSlots: ...


@dataclass(frozen=True, slots=True)
class CrowdStats:
    riders: int
    """Riders in the crowd now."""
    by_phase: dict[str, int]
    served: int
    """Riders who came and went."""
    logins: int
    deposits: int
    """Deposits the server showed held."""
    rentals_ok: int
    rentals_failed: dict[str, int]
    """Refused rents a busy network produces, by the API's reason."""
    returns: int
    """Returns the server confirmed (the rental ended)."""
    withdrawals: int
    refunds: int
    """Withdrawn deposits whose refund WeChat Pay confirmed."""
    unexpected: dict[str, int]
    """Anything that points at a bug, as `action: reason`."""
    tolerated: dict[str, int]
    """Answers we accept without counting them as failures (e.g. no withdraw endpoint)."""

    @property
    def riding(self) -> int:
        return self.by_phase.get(Phase.RIDING, 0) + self.by_phase.get(Phase.RETURNING, 0)

    @property
    def unexpected_total(self) -> int:
        return sum(self.unexpected.values())

    @property
    def failed_total(self) -> int:
        return sum(self.rentals_failed.values())


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.n: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.tolerated: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.n[name] += n

    def failure(self, action: Action, result: Result) -> None:
        with self.lock:
            if not result.expected:
                self.unexpected[f"{action}: {result.reason}"] += 1
            elif action is Action.RENT:
                self.failed[result.reason or "?"] += 1
            else:
                self.tolerated[f"{action}: {result.reason}"] += 1


_WAITING = frozenset({Action.CHECK_DEPOSIT, Action.CHECK_RETURN, Action.CHECK_REFUND})


@dataclass(frozen=True, slots=True)
class Endpoints:
    api: str
    """Base URL of the platform API, e.g. http://127.0.0.1:8000"""
    standin: str
    """Base URL of the WeChat stand-in (login codes, paying an order)."""


@dataclass(slots=True)
class _Rental:
    id: int
    kiosk_id: str
    tag: str | None


@dataclass(eq=False)
class Rider:
    """One rider: `step()` decides, does one step's requests, and says when to come back."""

    name: str
    http: httpx.Client
    endpoints: Endpoints
    world: KioskWorld
    known: frozenset[str]
    timing: RiderTiming
    counters: _Counters
    rng: random.Random
    center: tuple[float, float]
    area_m: float
    state: RiderState = field(init=False)
    position: tuple[float, float] = field(init=False)
    token: str | None = None
    payment_id: int | None = None
    rental: _Rental | None = None
    avoid: set[str] = field(default_factory=set)
    rent_key: str | None = None
    waiting_since: float | None = None
    late_counted: bool = False

    def __post_init__(self) -> None:
        self.state = new_state(self.timing, self.rng)
        self.position = random_point(self.center, self.area_m, self.rng)

    @property
    def done(self) -> bool:
        return self.state.phase is Phase.DONE

    @property
    def waited_s(self) -> float:
        """How long the rider has been waiting for the server in the current phase."""
        return 0.0 if self.waiting_since is None else time.monotonic() - self.waiting_since

    def step(self, stopping: bool = False) -> float:
        action = decide(self.state, stopping)
        transient = True
        try:
            result = self._do(action)
            transient = False
        except httpx.HTTPStatusError as exc:
            result = classify_error(action, exc.response.status_code, _json(exc.response))
        except httpx.HTTPError as exc:
            result = fail(f"transport {type(exc).__name__}", expected=False)
        if result.kind == "fail":
            self.counters.failure(action, result)
            if not result.expected:
                log.warning("%s: %s failed: %s", self.name, action, result.reason)
            if transient and action in _WAITING:
                # A failed look at the server says nothing about the deposit, the umbrella
                # or the refund: counted above, then keep waiting.
                result = WAIT
        if result.kind == "wait":
            if self.waiting_since is None:
                self.waiting_since = time.monotonic()
        else:
            self.waiting_since, self.late_counted = None, False
        return transition(self.state, action, result, self.timing, self.rng)

    # -- HTTP ---------------------------------------------------------------------------

    def _api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return self.http.request(method, self.endpoints.api + path, headers=headers, **kwargs)

    def _do(self, action: Action) -> Result:
        match action:
            case Action.LOGIN:
                return self._login()
            case Action.PAY_DEPOSIT:
                return self._pay_deposit()
            case Action.CHECK_DEPOSIT:
                return self._check_deposit()
            case Action.RENT:
                return self._rent()
            case Action.RETURN:
                return self._return()
            case Action.CHECK_RETURN:
                return self._check_return()
            case Action.WITHDRAW:
                return self._withdraw()
            case Action.CHECK_REFUND:
                return self._check_refund()
            case Action.LEAVE:
                return OK

    def _login(self) -> Result:
        # wx.login: WeChat hands the mini-program a one-time code for this WeChat user.
        issued = self.http.post(
            self.endpoints.standin + "/_standin/login-codes",
            json={"openid": openid_for(self.name)},
        )
        if issued.status_code != 200:
            return fail(f"stand-in login-codes {issued.status_code}", expected=False)
        r = self._api("POST", "/api/v1/riders/login", json={"code": issued.json()["code"]})
        if r.status_code != 200:
            return classify_error(Action.LOGIN, r.status_code, _json(r))
        self.token = str(r.json()["token"])
        self.counters.add("logins")
        log.info("%s logged in", self.name)
        return OK

    def _pay_deposit(self) -> Result:
        key = f"deposit-{self.name}-{self.state.deposit_attempts}"
        r = self._api("POST", "/api/v1/deposits", headers={"Idempotency-Key": key})
        if r.status_code not in (200, 201):
            return classify_error(Action.PAY_DEPOSIT, r.status_code, _json(r))
        body = r.json()
        self.payment_id = int(body["id"])
        params = body.get("request_payment")
        if not params:  # already confirmed (a repeated key): nothing to pay
            return OK
        # wx.requestPayment: the rider confirms and WeChat Pay takes the money, then
        # notifies the server; the package is "prepay_id=...".
        prepay_id = str(params["package"]).removeprefix("prepay_id=")
        paid = self.http.post(
            self.endpoints.standin + "/_standin/pay", json={"prepay_id": prepay_id}
        )
        if paid.status_code != 200:
            return fail(f"stand-in pay {paid.status_code}", expected=False)
        return OK

    def _check_deposit(self) -> Result:
        if self.state.polls == self.timing.refresh_after_polls and self.payment_id is not None:
            self._api("POST", f"/api/v1/deposits/{self.payment_id}/refresh")
        r = self._api("GET", "/api/v1/riders/me")
        r.raise_for_status()
        state = r.json()["deposit"]["state"]
        if state == "held":
            self.counters.add("deposits")
            log.info("%s: deposit held", self.name)
            return OK
        if state == "pending" and self.waited_s < self.timing.deposit_confirm_within_s:
            return WAIT
        return fail(f"deposit {state}", expected=False)

    def _nearby(
        self, need: Literal["umbrella", "free_slot"], where: tuple[float, float]
    ) -> KioskChoice | None:
        for radius in SEARCH_RADII_M:
            r = self._api(
                "GET",
                "/api/v1/kiosks/nearby",
                params={"lat": where[0], "lon": where[1], "radius_m": radius, "need": need},
            )
            r.raise_for_status()
            choice = pick_kiosk(
                r.json()["items"], self.known, self.rng, need=need, avoid=self.avoid
            )
            if choice is not None:
                return choice
        return None

    def _rent(self) -> Result:
        choice = self._nearby("umbrella", self.position)
        if choice is None:
            self.avoid.clear()
            return fail("no_kiosk_with_umbrellas_nearby", expected=True)
        # A retried request (after a transport error) keeps its key: it finds the first one's
        # rental instead of starting a second.
        self.rent_key = self.rent_key or f"rent-{self.name}-{secrets.token_hex(4)}"
        r = self._api(
            "POST",
            "/api/v1/rentals",
            json={"kiosk_id": choice.kiosk_id},
            headers={"Idempotency-Key": self.rent_key},
        )
        self.rent_key = None
        self.position = (choice.lat, choice.lon)
        if r.status_code in (200, 201):
            return self._riding(r.json())
        body = _json(r)
        if r.status_code == 409 and isinstance(body, dict) and body.get("error") == "rental_open":
            # The kiosk gave an umbrella after the API stopped waiting for it (a late
            # answer): the server made that rental real, so the rider has the umbrella.
            current = self._api("GET", "/api/v1/rentals/current")
            if current.status_code == 200 and (current.json() or {}).get("status") == "active":
                self.counters.add("late_starts")
                return self._riding(current.json())
        result = classify_error(Action.RENT, r.status_code, body)
        if result.expected:
            self.avoid.add(choice.kiosk_id)
        log.info("%s: could not rent at %s: %s", self.name, choice.kiosk_id, result.reason)
        return result

    def _riding(self, rental: Mapping[str, Any]) -> Result:
        self.rental = _Rental(int(rental["id"]), str(rental["kiosk_id"]), rental["umbrella_tag"])
        self.avoid.clear()
        self.counters.add("rentals_ok")
        log.info(
            "%s rented umbrella %s at %s/%s",
            self.name,
            rental["umbrella_tag"],
            rental["kiosk_id"],
            rental["slot_no"],
        )
        return OK

    def _return(self) -> Result:
        assert self.rental is not None
        if not self.rental.tag:
            return fail("rental without an umbrella tag", expected=False)
        tag = bytes.fromhex(self.rental.tag)
        destination = random_point(self.center, self.area_m, self.rng)
        tried: set[str] = set()
        for _ in range(3):
            choice = self._nearby("free_slot", destination)
            if choice is None or choice.kiosk_id in tried:
                break
            tried.add(choice.kiosk_id)
            handle = self.world.kiosk(choice.kiosk_id)
            empty = handle.empty_slots()
            for slot in self.rng.sample(empty, k=len(empty)):
                try:
                    handle.insert_umbrella(slot, tag)
                except ValueError:  # someone filled it a moment ago
                    continue
                self.position = (choice.lat, choice.lon)
                log.info(
                    "%s returned umbrella %s to %s/%s",
                    self.name,
                    self.rental.tag,
                    choice.kiosk_id,
                    slot,
                )
                return OK
            self.avoid.add(choice.kiosk_id)
        self.avoid.clear()
        return fail("no_free_slot_nearby", expected=True)

    def _check_return(self) -> Result:
        assert self.rental is not None
        r = self._api("GET", f"/api/v1/rentals/{self.rental.id}")
        r.raise_for_status()
        status = r.json()["status"]
        if status == "active":
            if self.waited_s > self.timing.return_seen_within_s and not self.late_counted:
                self.late_counted = True
                self.counters.failure(
                    Action.CHECK_RETURN, fail("return not seen in time", expected=False)
                )
            return WAIT
        self.rental = None
        if status == "returned":
            self.counters.add("returns")
            return OK
        return fail(f"rental {status}", expected=False)

    def _withdraw(self) -> Result:
        r = self._api("POST", "/api/v1/deposits/withdraw")
        if r.status_code not in (200, 202):
            return classify_error(Action.WITHDRAW, r.status_code, _json(r))
        self.counters.add("withdrawals")
        log.info("%s withdrew the deposit", self.name)
        return OK

    def _check_refund(self) -> Result:
        r = self._api("GET", "/api/v1/deposits/refund")
        r.raise_for_status()
        status = r.json()["status"]
        if status == "succeeded":
            self.counters.add("refunds")
            return OK
        if status in ("pending", "processing") and self.waited_s < self.timing.refund_watch_s:
            return WAIT
        return fail(f"refund {status}", expected=False)


def _json(r: httpx.Response) -> object:
    try:
        return r.json()
    except ValueError:
        return None


# ------------------------------------------------------------------------------- the crowd


class RiderCrowd:
    """`size` riders at a time over `world`'s kiosks, on `workers` threads.

    Riders appear at random points within `area_m` of `center` and arrive spread over the
    first seconds; a rider who is done is replaced by a new one (a new WeChat user).
    Thread-safe `stats()` for a live screen."""

    def __init__(
        self,
        endpoints: Endpoints,
        world: KioskWorld,
        size: int,
        *,
        center: tuple[float, float],
        area_m: float = 3_000.0,
        timing: RiderTiming | None = None,
        seed: int | None = None,
        workers: int | None = None,
        http_timeout_s: float = 60.0,
        name_prefix: str = "rider",
    ) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.endpoints = endpoints
        self.world = world
        self.size = size
        self.center = center
        self.area_m = area_m
        self.timing = timing or RiderTiming()
        self._rng = random.Random(seed)
        # a run tag: riders of an earlier run against the same database are other users
        self._prefix = f"{name_prefix}-{self._rng.getrandbits(24):06x}"
        self._workers = workers or max(1, min(size, 32))
        # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them
        # from its side: reusing one the server is closing fails the request (ReadError).
        self._http = httpx.Client(
            timeout=http_timeout_s,
            limits=httpx.Limits(max_connections=self._workers + 4, keepalive_expiry=2.0),
        )
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="rider")
        self._counters = _Counters()
        self._names = itertools.count(1)
        self._riders: set[Rider] = set()
        self._heap: list[tuple[float, int, Rider]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._halt = False
        self._thread: threading.Thread | None = None
        self._started = False
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> RiderCrowd:
        if self._started:
            raise RuntimeError("a RiderCrowd starts once")
        self._started = True
        known = frozenset(self.world.kiosk_ids)
        arrival_s = min(5.0, 0.25 * self.size) / self.timing.pace
        with self._cond:
            for _ in range(self.size):
                self._add_rider(known, self._rng.uniform(0, arrival_s))
        self._thread = threading.Thread(target=self._dispatch, name="rider-crowd", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain_s: float = 30.0) -> CrowdStats:
        """Stop starting anything: riders with an umbrella return it, payments and returns
        under way are waited for (at most `drain_s`), then every thread ends. Idempotent; a
        second call (e.g. after Ctrl-C interrupted the first) ends the threads at once."""
        first = self._started and not self._stopped
        self._stopped = True
        self._stopping.set()
        try:
            if first:
                now = time.monotonic()
                with self._cond:  # wake everyone: each next step follows `decide(stopping)`
                    self._heap = [(now, n, rider) for _, n, rider in self._heap]
                    heapq.heapify(self._heap)
                    self._cond.notify_all()
                    deadline = now + drain_s
                    while self._riders and time.monotonic() < deadline:
                        self._cond.wait(0.1)
        finally:
            with self._cond:
                self._halt = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join(timeout=10)
            # steps in flight finish (a rent answers within the API's wait); none start
            self._pool.shutdown(wait=first, cancel_futures=True)
            self._http.close()
        return self.stats()

    def __enter__(self) -> RiderCrowd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- reading --------------------------------------------------------------------------

    def stats(self) -> CrowdStats:
        with self._cond:
            phases = Counter(str(r.state.phase) for r in self._riders)
            riders = len(self._riders)
        c = self._counters
        with c.lock:
            return CrowdStats(
                riders=riders,
                by_phase=dict(phases),
                served=c.n["served"],
                logins=c.n["logins"],
                deposits=c.n["deposits"],
                rentals_ok=c.n["rentals_ok"],
                rentals_failed=dict(c.failed),
                returns=c.n["returns"],
                withdrawals=c.n["withdrawals"],
                refunds=c.n["refunds"],
                unexpected=dict(c.unexpected),
                tolerated=dict(c.tolerated),
            )

    # -- running --------------------------------------------------------------------------

    def _add_rider(self, known: frozenset[str], delay_s: float) -> None:
        """Call with `_cond` held."""
        rider = Rider(
            name=f"{self._prefix}-{next(self._names)}",
            http=self._http,
            endpoints=self.endpoints,
            world=self.world,
            known=known,
            timing=self.timing,
            counters=self._counters,
            rng=random.Random(self._rng.getrandbits(64)),
            center=self.center,
            area_m=self.area_m,
        )
        self._riders.add(rider)
        self._schedule(rider, delay_s)

    def _schedule(self, rider: Rider, delay_s: float) -> None:
        """Call with `_cond` held."""
        heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._order), rider))
        self._cond.notify_all()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._halt:
                        return
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    if wait is not None and wait <= 0:
                        _, _, rider = heapq.heappop(self._heap)
                        break
                    self._cond.wait(wait)
            try:
                self._pool.submit(self._run, rider)
            except RuntimeError:  # the pool shut down under us: stopping
                return

    def _run(self, rider: Rider) -> None:
        stopping = self._stopping.is_set()
        try:
            delay = rider.step(stopping)
        except Exception as exc:  # a bug in a step must not kill the crowd: count it
            log.exception("%s: step failed", rider.name)
            self._counters.failure(
                Action.LEAVE, fail(f"error {type(exc).__name__}: {exc}", expected=False)
            )
            delay = self.timing.draw(self.timing.retry_s, rider.rng)
        with self._cond:
            if rider.done:
                self._riders.discard(rider)
                self._counters.add("served")
                if not self._stopping.is_set():
                    self._add_rider(rider.known, self.timing.draw(self.timing.idle_s, self._rng))
                self._cond.notify_all()
                return
            if self._stopping.is_set():
                delay = min(delay, self.timing.poll_s)
            self._schedule(rider, delay)


def describe(stats: CrowdStats) -> str:
    """One line of counters, for a live screen or a summary."""
    failed = ", ".join(f"{k} {v}" for k, v in sorted(stats.rentals_failed.items())) or "none"
    unexpected = ", ".join(f"{k} x{v}" for k, v in sorted(stats.unexpected.items()))
    tolerated = ", ".join(f"{k} x{v}" for k, v in sorted(stats.tolerated.items()))
    line = (
        f"riders {stats.riders} ({stats.riding} with an umbrella), {stats.served} served · "
        f"logins {stats.logins} · deposits held {stats.deposits} · "
        f"rentals {stats.rentals_ok} ok, {stats.failed_total} refused ({failed}) · "
        f"returns {stats.returns} · withdrawals {stats.withdrawals} "
        f"(refunded {stats.refunds}) · unexpected {stats.unexpected_total}"
    )
    if unexpected:
        line += f" ({unexpected})"
    if tolerated:
        line += f" · tolerated: {tolerated}"
    return line
