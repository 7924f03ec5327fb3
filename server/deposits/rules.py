"""Pure deposit rules: the payment window, refund numbering and the refund retry and query
schedules. No I/O."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

#: How long a rider has to pay a deposit order: sent to WeChat Pay as the order's
#: `time_expire` (the prepay_id itself lasts two hours). An order still unpaid after it, plus
#: CLOSE_GRACE for the clocks and a payment in flight, is closed at WeChat Pay (关闭订单) by
#: the reconciliation job and marked `closed`: it can no longer be paid, and is no longer
#: queried on every run.
PAYMENT_WINDOW: Final = timedelta(minutes=30)
CLOSE_GRACE: Final = timedelta(minutes=5)

#: WeChat Pay 申请退款: out_refund_no is 1-64 characters of [0-9A-Za-z_-|*@], unique per
#: merchant; we keep it within 6-64 characters like out_trade_no.
OUT_REFUND_NO_PATTERN: Final = re.compile(r"^[0-9A-Za-z_\-|*@]{6,64}$")

#: A withdrawal's refund is requested in a second transaction right after the withdrawal
#: commits; if that never happens (the process died), the retry job requests it after this.
SUBMIT_GRACE: Final = timedelta(minutes=1)

#: Waits after the n-th failed refund request (1-based); the last one repeats forever
#: (SPEC §2: the refund is retried until it succeeds).
REFUND_RETRY_DELAYS: Final = (
    timedelta(seconds=30),
    timedelta(minutes=1),
    timedelta(minutes=2),
    timedelta(minutes=5),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
)

#: A refund WeChat accepted (PROCESSING) is first queried after this, in case its
#: notification is lost; later queries back off with the refund's age, up to an hour.
REFUND_QUERY_AFTER: Final = timedelta(minutes=1)
REFUND_QUERY_MAX: Final = timedelta(hours=1)

#: WeChat's refund states (退款状态): SUCCESS, PROCESSING, ABNORMAL (the rider's account
#: cannot take it: needs an operator), CLOSED (the refund was closed, money not returned).
REFUND_SUCCESS: Final = "SUCCESS"
REFUND_PROCESSING: Final = "PROCESSING"
REFUND_FAILED_STATES: Final = frozenset({"ABNORMAL", "CLOSED"})
REFUND_STATES: Final = frozenset({REFUND_SUCCESS, REFUND_PROCESSING, *REFUND_FAILED_STATES})


def out_refund_no_for(out_trade_no: str) -> str:
    """One refund per deposit payment, so its number follows from the payment's: whatever
    retries or races happen on our side, WeChat sees one out_refund_no and refunds once."""
    out_refund_no = f"RF{out_trade_no}"
    if not OUT_REFUND_NO_PATTERN.fullmatch(out_refund_no):
        raise ValueError(f"cannot derive an out_refund_no from {out_trade_no!r}")
    return out_refund_no


def refund_retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed refund request (1-based)."""
    return REFUND_RETRY_DELAYS[min(max(attempts, 1), len(REFUND_RETRY_DELAYS)) - 1]


def refund_query_delay(age: timedelta) -> timedelta:
    """The wait before asking WeChat again about a refund still PROCESSING at `age`."""
    return min(max(age / 4, REFUND_QUERY_AFTER), REFUND_QUERY_MAX)
