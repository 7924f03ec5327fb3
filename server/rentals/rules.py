"""Pure rental rules (SPEC §2): the free window, what an unlock answer means, what a return
does to a rental, which reminders are due, which slot to open. No I/O, no clock."""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from firmware_protocol.messages import CmdStatus
from server.models.rental import RentalStatus

#: SPEC §2: 7 days free from the moment the umbrella left the slot.
FREE_WINDOW: Final = timedelta(days=7)
#: SPEC §2: riders are reminded on day 5 and day 6 of the window.
REMINDER_AFTER: Final = (timedelta(days=5), timedelta(days=6))
#: How many slots one rent request tries when slots jam or turn out empty.
MAX_EJECT_ATTEMPTS: Final = 3


def deadline_for(started_at: datetime) -> datetime:
    return started_at + FREE_WINDOW


class Failure(enum.StrEnum):
    """Why a rental did not start, as the rider sees it (the API's error `code`)."""

    KIOSK_OFFLINE = "kiosk_offline"
    KIOSK_TIMEOUT = "kiosk_timeout"
    NOT_TAKEN = "umbrella_not_taken"
    JAMMED = "slots_jammed"
    NO_UMBRELLA = "no_umbrella_available"
    REFUSED = "kiosk_refused"


FAILURE_MESSAGES: Final[dict[Failure, str]] = {
    Failure.KIOSK_OFFLINE: "This kiosk is offline right now; try a kiosk nearby.",
    Failure.KIOSK_TIMEOUT: "The kiosk did not answer in time; nothing was charged.",
    Failure.NOT_TAKEN: "The umbrella was not taken before the slot locked again; "
    "nothing was charged.",
    Failure.JAMMED: "The slots we tried would not open; nothing was charged. "
    "Please try a kiosk nearby.",
    Failure.NO_UMBRELLA: "No umbrella is available at this kiosk right now.",
    Failure.REFUSED: "The kiosk refused the unlock; nothing was charged.",
}


class Next(enum.Enum):
    """What the rent flow does with the kiosk's answer to an unlock."""

    ACTIVATE = "activate"
    TRY_ANOTHER_SLOT = "try_another_slot"
    FAIL = "fail"


@dataclass(frozen=True)
class UnlockOutcome:
    next: Next
    failure: Failure | None = None


def unlock_outcome(status: CmdStatus | None) -> UnlockOutcome:
    """firmware_protocol SPEC §4.3 result codes → the rent flow's next step. `None` = no
    answer within the wait (the command's expiry makes a late delivery harmless)."""
    match status:
        case CmdStatus.TAKEN:
            return UnlockOutcome(Next.ACTIVATE)
        case CmdStatus.JAMMED | CmdStatus.EMPTY | CmdStatus.BAD_SLOT:
            # This slot cannot give an umbrella; another one may.
            return UnlockOutcome(Next.TRY_ANOTHER_SLOT, Failure.JAMMED)
        case CmdStatus.NOT_TAKEN:
            return UnlockOutcome(Next.FAIL, Failure.NOT_TAKEN)
        case None | CmdStatus.EXPIRED:
            return UnlockOutcome(Next.FAIL, Failure.KIOSK_TIMEOUT)
        case _:
            return UnlockOutcome(Next.FAIL, Failure.REFUSED)


def pick_slot(
    candidates: Iterable[tuple[int, str]], *, exclude: Collection[int] = ()
) -> tuple[int, str] | None:
    """The slot to unlock among (slot_no, tag) holding a rentable umbrella: the lowest-numbered
    one not excluded (slots already tried, or reserved by another rider's unlock)."""
    usable = sorted(c for c in candidates if c[0] not in exclude)
    return usable[0] if usable else None


class ReturnEffect(enum.Enum):
    """What an umbrella inserted into a slot does to its rental (SPEC §2, Return anywhere and
    Automatic forfeiture)."""

    #: An active rental ends, at the kiosk's timestamp.
    END = "end"
    #: Forfeited, but the kiosk saw the return before the deadline: undo the forfeiture.
    END_AND_REVERSE = "end_and_reverse"
    #: Forfeited and returned after the deadline: back in stock, the deposit stays forfeited.
    RESTOCK_ONLY = "restock_only"
    #: Still active but seen at or after the deadline (the sweep had not run yet): forfeit
    #: now, exactly as the sweep would have, then restock.
    FORFEIT_AND_RESTOCK = "forfeit_and_restock"
    #: Nothing to end (no rental, or one that already ended).
    NONE = "none"


def return_effect(
    status: RentalStatus, deadline_at: datetime | None, seen_at: datetime
) -> ReturnEffect:
    if status is RentalStatus.ACTIVE:
        if deadline_at is not None and is_overdue(deadline_at, seen_at):
            return ReturnEffect.FORFEIT_AND_RESTOCK
        return ReturnEffect.END
    if status is RentalStatus.FORFEITED:
        if deadline_at is not None and seen_at < deadline_at:
            return ReturnEffect.END_AND_REVERSE
        return ReturnEffect.RESTOCK_ONLY
    return ReturnEffect.NONE


def is_overdue(deadline_at: datetime, now: datetime) -> bool:
    """The deadline is the last instant of the window: a return seen at `deadline_at` or
    later is late, and the sweep forfeits at `now >= deadline_at`."""
    return now >= deadline_at


def reminders_due(started_at: datetime, reminders_sent: int, now: datetime) -> int:
    """How many reminders should have been sent by `now` (0..2), never fewer than sent."""
    due = sum(1 for after in REMINDER_AFTER if now >= started_at + after)
    return max(due, reminders_sent)
