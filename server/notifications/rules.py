"""What riders are told (SPEC §2: before the deadline, on day 5 and day 6, and of every money
movement). Pure: kinds, their dedup keys, the retry schedule and when to stop. No I/O.
What each kind says in WeChat is `templates.py`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

RENTAL_STARTED: Final = "rental_started"
RENTAL_RETURNED: Final = "rental_returned"
DEADLINE_DAY5: Final = "deadline_day5"
DEADLINE_DAY6: Final = "deadline_day6"
DEPOSIT_RECEIVED: Final = "deposit_received"
DEPOSIT_REFUNDED: Final = "deposit_refunded"
DEPOSIT_FORFEITED: Final = "deposit_forfeited"
FORFEITURE_REVERSED: Final = "forfeiture_reversed"
RENTAL_ENDED_BY_OPERATOR: Final = "rental_ended_by_operator"

KINDS: Final = frozenset(
    {
        RENTAL_STARTED,
        RENTAL_RETURNED,
        DEADLINE_DAY5,
        DEADLINE_DAY6,
        DEPOSIT_RECEIVED,
        DEPOSIT_REFUNDED,
        DEPOSIT_FORFEITED,
        FORFEITURE_REVERSED,
        RENTAL_ENDED_BY_OPERATOR,
    }
)

#: Delays between send attempts of one notification; the last one repeats.
RETRY_DELAYS: Final = (
    timedelta(seconds=15),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
)


def dedup_key(kind: str, subject: str) -> str:
    """One notification per (kind, subject): "deadline_day5:rental:42"."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    return f"{kind}:{subject}"


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt (1-based)."""
    return RETRY_DELAYS[min(max(attempts, 1), len(RETRY_DELAYS)) - 1]


#: A notification still failing this long after it was queued is given up (`undeliverable`):
#: news a day late is noise, and the outbox must not grow with rows retried forever.
GIVE_UP_AFTER: Final = timedelta(hours=24)

#: The kinds that announce a deadline (their payload carries `deadline_at`).
REMINDER_KINDS: Final = frozenset({DEADLINE_DAY5, DEADLINE_DAY6})


def gives_up(created_at: datetime, now: datetime) -> bool:
    """After a failed attempt: stop retrying a notification queued `GIVE_UP_AFTER` ago."""
    return now - created_at >= GIVE_UP_AFTER


def stale_reason(kind: str, payload: Mapping[str, object], now: datetime) -> str | None:
    """Why a notification must not be sent any more, or None. A deadline reminder that would
    arrive after the deadline it announces misleads (the deposit is already forfeited, and
    that has its own notification)."""
    if kind not in REMINDER_KINDS:
        return None
    deadline = payload.get("deadline_at")
    if not isinstance(deadline, str):
        return None
    try:
        at = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return "the deadline it announces has passed" if now >= at else None
