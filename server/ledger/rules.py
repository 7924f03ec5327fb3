"""Pure ledger rules: the chart of accounts and the postings of each money movement. No I/O.

Chart of accounts (SPEC §3: rider money stays with the licensed payment institution):

| code                          | type      | meaning                                             |
| ----------------------------- | --------- | --------------------------------------------------- |
| `wechat:deposits_held`        | asset     | rider deposits WeChat Pay holds on riders' behalf   |
| `wechat:forfeitures_held`     | asset     | forfeited deposits, now ours, still at WeChat Pay   |
|                               |           | until profit-sharing (分账) or settlement moves them |
| `rider:<rider_id>:deposit`    | liability | the deposit we owe that rider                       |
| `revenue:forfeited_deposits`  | revenue   | deposits forfeited at the 7-day deadline, net of    |
|                               |           | reversals (partner share base, SPEC §5)             |
| `advertiser:<id>:receivable`  | asset     | what that advertiser owes us on issued invoices     |
| `revenue:ads`                 | revenue   | screen time sold, gross (SPEC §4 Billing)           |
| `revenue:ads_credits`         | revenue   | contra-revenue: credits for spots lost to offline   |
|                               |           | kiosks, applied to invoices (debit balance)         |
| `bank:ads_received`           | asset     | advertisers' payments received                      |
| `expense:partner_share`       | expense   | partners' revenue share (SPEC §5), accrued when a   |
|                               |           | statement is issued                                 |
| `partner:<id>:payable`        | liability | revenue share owed to that partner, not yet paid    |
| `wechat:profit_sharing`       | asset     | platform funds at WeChat Pay split out to partners  |
|                               |           | through profit sharing (分账); credited by payouts  |
|                               |           | (funding it is a treasury transfer outside this     |
|                               |           | ledger, so its balance is what was paid out, < 0)   |

Sign convention (one signed column): debit positive, credit negative. Each entry sums to
zero; an account's balance is the SUM of its postings, so an asset's balance is positive
and a liability's or revenue's is negative. `owed(rider) = -balance(rider:<id>:deposit)`.

Movements (amount `a` fen, always > 0):

| kind                  | debit                     | credit                       |
| --------------------- | ------------------------- | ---------------------------- |
| `deposit_received`    | wechat:deposits_held  a   | rider:<id>:deposit        a  |
| `deposit_refunded`    | rider:<id>:deposit    a   | wechat:deposits_held      a  |
| `deposit_forfeited`   | rider:<id>:deposit    a   | revenue:forfeited_deposits a |
|                       | wechat:forfeitures_held a | wechat:deposits_held      a  |
| `forfeiture_reversed` | the exact negation of `deposit_forfeited`                |
| `ad_invoice_issued`   | advertiser:<id>:receivable total | revenue:ads, per kiosk |
|                       | revenue:ads_credits, per kiosk   |                        |
| `ad_invoice_paid`     | bank:ads_received total   | advertiser:<id>:receivable total |
| `partner_share_accrued` | expense:partner_share a | partner:<id>:payable      a  |
| `partner_share_paid`  | partner:<id>:payable  a   | wechat:profit_sharing     a  |

An ad invoice's entry amount is its subtotal (issued) or its total (paid); zero legs are
left out (an invoice its credits cover entirely has no receivable and no payment). The
revenue and credit legs are one posting per kiosk, carrying `Posting.kiosk_id`, so a
partner's ad revenue is a SUM over its kiosks' postings (`server/revenue/`).

A forfeiture moves both the obligation (we no longer owe the rider; it is revenue) and the
money's label at WeChat (no longer a rider's deposit), so `wechat:deposits_held` always
equals what we owe riders: deposits are fully backed and never spent on anything else.

Invariants (`ledger.service.check_invariants` computes them in SQL):
1. every entry has postings that sum to zero;
2. no rider account has a debit balance (we never owe a rider less than zero), and no rider
   has more forfeitures reversed than forfeited;
3. `received = held + refunded + forfeited`, where
   received  = Σ amount of `deposit_received` entries,
   refunded  = Σ amount of `deposit_refunded` entries,
   held      = Σ owed(rider) over all rider accounts (= -Σ their balances),
   forfeited = -balance(revenue:forfeited_deposits) (forfeitures net of reversals);
4. balance(wechat:deposits_held) = held (every deposit owed is money WeChat holds);
5. no advertiser receivable has a credit balance (an advertiser never paid more than it
   was invoiced);
6. no partner payable has a debit balance (a partner is never paid more than accrued).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from server.core.errors import Conflict, DomainError
from server.core.money import Fen
from server.models.ledger import AccountType, EntryKind

WECHAT_DEPOSITS_HELD: Final = "wechat:deposits_held"
WECHAT_FORFEITURES_HELD: Final = "wechat:forfeitures_held"
REVENUE_FORFEITED_DEPOSITS: Final = "revenue:forfeited_deposits"

#: The platform's own accounts; rider accounts are added per rider.
PLATFORM_ACCOUNTS: Final[dict[str, AccountType]] = {
    WECHAT_DEPOSITS_HELD: AccountType.ASSET,
    WECHAT_FORFEITURES_HELD: AccountType.ASSET,
    REVENUE_FORFEITED_DEPOSITS: AccountType.REVENUE,
}

REVENUE_ADS: Final = "revenue:ads"
REVENUE_ADS_CREDITS: Final = "revenue:ads_credits"
BANK_ADS_RECEIVED: Final = "bank:ads_received"

#: The platform's advertising accounts; receivables are added per advertiser.
AD_ACCOUNTS: Final[dict[str, AccountType]] = {
    REVENUE_ADS: AccountType.REVENUE,
    REVENUE_ADS_CREDITS: AccountType.REVENUE,
    BANK_ADS_RECEIVED: AccountType.ASSET,
}
ADVERTISER_ACCOUNT_PREFIX: Final = "advertiser:"
ADVERTISER_ACCOUNT_SUFFIX: Final = ":receivable"

EXPENSE_PARTNER_SHARE: Final = "expense:partner_share"
WECHAT_PROFIT_SHARING: Final = "wechat:profit_sharing"
#: The platform's revenue-share accounts; payables are added per partner.
PARTNER_SHARE_ACCOUNTS: Final[dict[str, AccountType]] = {
    EXPENSE_PARTNER_SHARE: AccountType.EXPENSE,
    WECHAT_PROFIT_SHARING: AccountType.ASSET,
}
PARTNER_ACCOUNT_PREFIX: Final = "partner:"
PARTNER_ACCOUNT_SUFFIX: Final = ":payable"

RIDER_ACCOUNT_PREFIX: Final = "rider:"
RIDER_ACCOUNT_SUFFIX: Final = ":deposit"
MAX_RIDER_ID_LENGTH: Final = 64


class InvalidAmount(DomainError):
    code = "invalid_amount"


class InsufficientDeposit(Conflict):
    """A refund or forfeiture larger than the deposit we owe the rider."""

    code = "insufficient_deposit"


class NothingToReverse(Conflict):
    """A forfeiture reversal larger than what was forfeited from that rider."""

    code = "nothing_to_reverse"


class IdempotencyKeyReused(Conflict):
    """The key was already used for a different movement: a caller bug, never a retry."""

    code = "idempotency_key_reused"


class UnbalancedEntry(ValueError):
    """Postings that do not sum to zero: a bug in the rules, never a user error."""


@dataclass(frozen=True)
class PostingLine:
    account: str
    amount: Fen  # debit positive, credit negative
    #: The kiosk the amount is attributable to (ad revenue and credits); None elsewhere.
    kiosk_id: str | None = None


def rider_account(rider_id: str) -> str:
    if not rider_id or len(rider_id) > MAX_RIDER_ID_LENGTH or ":" in rider_id:
        raise ValueError(f"invalid rider id {rider_id!r}")
    return f"{RIDER_ACCOUNT_PREFIX}{rider_id}{RIDER_ACCOUNT_SUFFIX}"


def advertiser_receivable(advertiser_id: int) -> str:
    if type(advertiser_id) is not int or advertiser_id <= 0:
        raise ValueError(f"invalid advertiser id {advertiser_id!r}")
    return f"{ADVERTISER_ACCOUNT_PREFIX}{advertiser_id}{ADVERTISER_ACCOUNT_SUFFIX}"


def partner_payable(partner_id: int) -> str:
    if type(partner_id) is not int or partner_id <= 0:
        raise ValueError(f"invalid partner id {partner_id!r}")
    return f"{PARTNER_ACCOUNT_PREFIX}{partner_id}{PARTNER_ACCOUNT_SUFFIX}"


def account_type(code: str) -> AccountType:
    if code in PLATFORM_ACCOUNTS:
        return PLATFORM_ACCOUNTS[code]
    if code in AD_ACCOUNTS:
        return AD_ACCOUNTS[code]
    if code in PARTNER_SHARE_ACCOUNTS:
        return PARTNER_SHARE_ACCOUNTS[code]
    if code.startswith(PARTNER_ACCOUNT_PREFIX) and code.endswith(PARTNER_ACCOUNT_SUFFIX):
        return AccountType.LIABILITY
    if code.startswith(ADVERTISER_ACCOUNT_PREFIX) and code.endswith(ADVERTISER_ACCOUNT_SUFFIX):
        return AccountType.ASSET
    if code.startswith(RIDER_ACCOUNT_PREFIX) and code.endswith(RIDER_ACCOUNT_SUFFIX):
        return AccountType.LIABILITY
    raise ValueError(f"unknown ledger account {code!r}")


def require_amount(amount: object) -> Fen:
    """A movement's amount: a positive integer number of fen. Floats, Decimals, bools and
    numeric strings are refused, not rounded."""
    if type(amount) is not int:
        raise InvalidAmount(f"amount must be an integer number of fen, got {amount!r}")
    if amount <= 0:
        raise InvalidAmount(f"amount must be positive, got {amount} fen", amount=amount)
    return Fen(amount)


def ensure_balanced(lines: Iterable[PostingLine]) -> None:
    lines = list(lines)
    if len(lines) < 2 or any(line.amount == 0 for line in lines):
        raise UnbalancedEntry(f"an entry needs at least two non-zero postings: {lines}")
    total = sum(line.amount for line in lines)
    if total != 0:
        raise UnbalancedEntry(f"postings sum to {total} fen, not 0: {lines}")


def _forfeiture(rider_id: str, amount: Fen) -> tuple[PostingLine, ...]:
    return (
        PostingLine(rider_account(rider_id), amount),
        PostingLine(REVENUE_FORFEITED_DEPOSITS, Fen(-amount)),
        PostingLine(WECHAT_FORFEITURES_HELD, amount),
        PostingLine(WECHAT_DEPOSITS_HELD, Fen(-amount)),
    )


def negate(lines: Sequence[PostingLine]) -> tuple[PostingLine, ...]:
    return tuple(PostingLine(line.account, Fen(-line.amount)) for line in lines)


def postings_for(
    kind: EntryKind,
    *,
    rider_id: str,
    amount: object,
    owed: Fen,
    forfeited: Fen,
) -> tuple[PostingLine, ...]:
    """The postings of one movement, given what we owe the rider now (`owed`) and what was
    forfeited from them net of reversals (`forfeited`). Refuses a movement that would leave
    the rider owed less than zero or reverse more than was forfeited."""
    fen = require_amount(amount)
    account = rider_account(rider_id)
    lines: tuple[PostingLine, ...]
    if kind is EntryKind.DEPOSIT_RECEIVED:
        lines = (PostingLine(WECHAT_DEPOSITS_HELD, fen), PostingLine(account, Fen(-fen)))
    elif kind is EntryKind.DEPOSIT_REFUNDED:
        _require_owed(kind, rider_id, fen, owed)
        lines = (PostingLine(account, fen), PostingLine(WECHAT_DEPOSITS_HELD, Fen(-fen)))
    elif kind is EntryKind.DEPOSIT_FORFEITED:
        _require_owed(kind, rider_id, fen, owed)
        lines = _forfeiture(rider_id, fen)
    elif kind is EntryKind.FORFEITURE_REVERSED:
        if fen > forfeited:
            raise NothingToReverse(
                f"cannot reverse {fen} fen: {forfeited} fen forfeited from rider {rider_id}",
                rider_id=rider_id,
                amount=fen,
                forfeited=forfeited,
            )
        lines = negate(_forfeiture(rider_id, fen))
    else:
        raise ValueError(f"{kind.value} is not a rider's movement (see invoice_postings)")
    ensure_balanced(lines)
    return lines


def invoice_postings(
    kind: EntryKind,
    *,
    advertiser_id: int,
    revenue: Mapping[str | None, Fen],
    credits: Mapping[str | None, Fen],
) -> tuple[PostingLine, ...]:
    """The postings of an advertiser invoice being issued or paid (module docstring), from
    its revenue and applied credits per kiosk (None: a line without a kiosk); total =
    subtotal - credits. Zero legs are left out; () when nothing moves at all."""
    if any(v < 0 for v in revenue.values()) or any(v < 0 for v in credits.values()):
        raise ValueError(f"invalid invoice amounts: revenue {revenue}, credits {credits}")
    subtotal = Fen(sum(revenue.values()))
    credited = Fen(sum(credits.values()))
    if credited > subtotal:
        raise ValueError(f"credits {credited} exceed the subtotal {subtotal}")
    receivable = advertiser_receivable(advertiser_id)
    total = Fen(subtotal - credited)
    candidates: tuple[PostingLine, ...]
    if kind is EntryKind.AD_INVOICE_ISSUED:
        candidates = (
            PostingLine(receivable, total),
            *(
                PostingLine(REVENUE_ADS_CREDITS, fen, kiosk)
                for kiosk, fen in sorted(credits.items(), key=_kiosk_order)
            ),
            *(
                PostingLine(REVENUE_ADS, Fen(-fen), kiosk)
                for kiosk, fen in sorted(revenue.items(), key=_kiosk_order)
            ),
        )
    elif kind is EntryKind.AD_INVOICE_PAID:
        candidates = (PostingLine(BANK_ADS_RECEIVED, total), PostingLine(receivable, Fen(-total)))
    else:
        raise ValueError(f"{kind.value} is not an invoice movement")
    lines = tuple(line for line in candidates if line.amount != 0)
    if lines:
        ensure_balanced(lines)
    return lines


def _kiosk_order(item: tuple[str | None, Fen]) -> str:
    return item[0] or ""


def partner_share_postings(
    kind: EntryKind, *, partner_id: int, amount: object
) -> tuple[PostingLine, ...]:
    """A statement's share accrued (expense against the partner's payable) or paid out
    (payable against the profit-sharing funds at WeChat Pay)."""
    fen = require_amount(amount)
    payable = partner_payable(partner_id)
    if kind is EntryKind.PARTNER_SHARE_ACCRUED:
        lines = (PostingLine(EXPENSE_PARTNER_SHARE, fen), PostingLine(payable, Fen(-fen)))
    elif kind is EntryKind.PARTNER_SHARE_PAID:
        lines = (PostingLine(payable, fen), PostingLine(WECHAT_PROFIT_SHARING, Fen(-fen)))
    else:
        raise ValueError(f"{kind.value} is not a partner share movement")
    ensure_balanced(lines)
    return lines


def _require_owed(kind: EntryKind, rider_id: str, amount: Fen, owed: Fen) -> None:
    if amount > owed:
        verb = "refund" if kind is EntryKind.DEPOSIT_REFUNDED else "forfeit"
        raise InsufficientDeposit(
            f"cannot {verb} {amount} fen: rider {rider_id} has {owed} fen of deposit held",
            rider_id=rider_id,
            amount=amount,
            held=owed,
        )


@dataclass(frozen=True)
class DepositTotals:
    """The terms of `received = held + refunded + forfeited` (module docstring, invariant 3)."""

    received: Fen
    held: Fen
    refunded: Fen
    forfeited: Fen
    wechat_deposits_held: Fen

    def violations(self) -> list[str]:
        found: list[str] = []
        if self.received != self.held + self.refunded + self.forfeited:
            found.append(
                f"deposits received {self.received} != held {self.held} + refunded "
                f"{self.refunded} + forfeited {self.forfeited} (fen)"
            )
        if self.wechat_deposits_held != self.held:
            found.append(
                f"{WECHAT_DEPOSITS_HELD} holds {self.wechat_deposits_held} fen but riders "
                f"are owed {self.held} fen"
            )
        return found
