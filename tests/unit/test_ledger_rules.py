"""The ledger's pure rules: each movement's postings, the refusals, and the money type."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from server.core.money import DEPOSIT, Fen, fen, format_yuan, yuan_str
from server.ledger import rules
from server.ledger.rules import (
    REVENUE_FORFEITED_DEPOSITS,
    WECHAT_DEPOSITS_HELD,
    WECHAT_FORFEITURES_HELD,
    DepositTotals,
    InsufficientDeposit,
    InvalidAmount,
    NothingToReverse,
    PostingLine,
    UnbalancedEntry,
)
from server.models.ledger import AccountType, EntryKind

RIDER = "r1"
ACCOUNT = "rider:r1:deposit"


def lines(
    kind: EntryKind, amount: object = DEPOSIT, *, owed: int = 3000, forfeited: int = 3000
) -> tuple[PostingLine, ...]:
    return rules.postings_for(
        kind, rider_id=RIDER, amount=amount, owed=Fen(owed), forfeited=Fen(forfeited)
    )


def by_account(*entries: tuple[PostingLine, ...]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for entry in entries:
        for line in entry:
            totals[line.account] += line.amount
    return {account: total for account, total in totals.items() if total}


RIDER_KINDS = (
    EntryKind.DEPOSIT_RECEIVED,
    EntryKind.DEPOSIT_REFUNDED,
    EntryKind.DEPOSIT_FORFEITED,
    EntryKind.FORFEITURE_REVERSED,
)


@pytest.mark.parametrize("kind", RIDER_KINDS)
def test_every_rider_movement_sums_to_zero_with_no_zero_postings(kind: EntryKind) -> None:
    postings = lines(kind)
    assert sum(p.amount for p in postings) == 0
    assert all(p.amount != 0 for p in postings)
    assert len(postings) >= 2


def test_a_received_deposit_is_held_at_wechat_and_owed_to_the_rider() -> None:
    assert by_account(lines(EntryKind.DEPOSIT_RECEIVED)) == {
        WECHAT_DEPOSITS_HELD: 3000,
        ACCOUNT: -3000,
    }


def test_a_refund_pays_the_rider_back_out_of_the_deposits_wechat_holds() -> None:
    assert by_account(lines(EntryKind.DEPOSIT_REFUNDED)) == {
        ACCOUNT: 3000,
        WECHAT_DEPOSITS_HELD: -3000,
    }


def test_a_forfeiture_turns_the_rider_deposit_into_revenue_still_held_at_wechat() -> None:
    assert by_account(lines(EntryKind.DEPOSIT_FORFEITED)) == {
        ACCOUNT: 3000,
        REVENUE_FORFEITED_DEPOSITS: -3000,
        WECHAT_FORFEITURES_HELD: 3000,
        WECHAT_DEPOSITS_HELD: -3000,
    }


def test_a_reversal_exactly_undoes_the_forfeiture() -> None:
    forfeiture = lines(EntryKind.DEPOSIT_FORFEITED)
    reversal = lines(EntryKind.FORFEITURE_REVERSED)
    assert by_account(forfeiture, reversal) == {}
    assert reversal == rules.negate(forfeiture)


def test_receive_then_refund_leaves_every_account_at_zero() -> None:
    assert by_account(lines(EntryKind.DEPOSIT_RECEIVED), lines(EntryKind.DEPOSIT_REFUNDED)) == {}


def test_refunding_more_than_is_held_is_refused() -> None:
    with pytest.raises(InsufficientDeposit, match="cannot refund 3000 fen"):
        lines(EntryKind.DEPOSIT_REFUNDED, owed=2999)


def test_refunding_a_deposit_never_received_is_refused() -> None:
    with pytest.raises(InsufficientDeposit):
        lines(EntryKind.DEPOSIT_REFUNDED, owed=0)


def test_forfeiting_a_deposit_not_held_is_refused() -> None:
    with pytest.raises(InsufficientDeposit, match="cannot forfeit"):
        lines(EntryKind.DEPOSIT_FORFEITED, owed=0)


def test_reversing_more_than_was_forfeited_is_refused() -> None:
    with pytest.raises(NothingToReverse):
        lines(EntryKind.FORFEITURE_REVERSED, forfeited=0)
    with pytest.raises(NothingToReverse):
        lines(EntryKind.FORFEITURE_REVERSED, forfeited=2999)


def test_a_refusal_is_a_conflict_the_http_edge_maps_to_409() -> None:
    with pytest.raises(InsufficientDeposit) as caught:
        lines(EntryKind.DEPOSIT_REFUNDED, owed=0)
    assert caught.value.status_code == 409
    assert caught.value.code == "insufficient_deposit"
    assert caught.value.details == {"rider_id": RIDER, "amount": 3000, "held": 0}


@pytest.mark.parametrize("amount", [30.0, 3000.0, Decimal(3000), "3000", True, None, 3000.5])
def test_an_amount_that_is_not_an_integer_of_fen_is_refused(amount: object) -> None:
    with pytest.raises(InvalidAmount, match="integer number of fen"):
        lines(EntryKind.DEPOSIT_RECEIVED, amount)


@pytest.mark.parametrize("amount", [0, -1, -3000])
def test_a_zero_or_negative_amount_is_refused(amount: int) -> None:
    with pytest.raises(InvalidAmount, match="must be positive"):
        lines(EntryKind.DEPOSIT_RECEIVED, amount)


def test_postings_that_do_not_sum_to_zero_are_refused() -> None:
    with pytest.raises(UnbalancedEntry, match="sum to 1 fen"):
        rules.ensure_balanced(
            [PostingLine(WECHAT_DEPOSITS_HELD, Fen(3001)), PostingLine(ACCOUNT, Fen(-3000))]
        )
    with pytest.raises(UnbalancedEntry, match="at least two"):
        rules.ensure_balanced([PostingLine(ACCOUNT, Fen(0))])


def test_rider_accounts_are_liabilities_and_platform_accounts_have_fixed_types() -> None:
    assert rules.rider_account("42") == "rider:42:deposit"
    assert rules.account_type("rider:42:deposit") is AccountType.LIABILITY
    assert rules.account_type(WECHAT_DEPOSITS_HELD) is AccountType.ASSET
    assert rules.account_type(WECHAT_FORFEITURES_HELD) is AccountType.ASSET
    assert rules.account_type(REVENUE_FORFEITED_DEPOSITS) is AccountType.REVENUE
    with pytest.raises(ValueError, match="unknown ledger account"):
        rules.account_type("bank:cash")


@pytest.mark.parametrize("rider_id", ["", "a:b", "x" * 65])
def test_a_rider_id_that_would_make_an_ambiguous_account_code_is_refused(rider_id: str) -> None:
    with pytest.raises(ValueError, match="invalid rider id"):
        rules.rider_account(rider_id)


def test_deposit_totals_report_a_broken_equation_and_unbacked_deposits() -> None:
    fine = DepositTotals(
        received=Fen(9000),
        held=Fen(3000),
        refunded=Fen(3000),
        forfeited=Fen(3000),
        wechat_deposits_held=Fen(3000),
    )
    assert fine.violations() == []
    broken = DepositTotals(
        received=Fen(9000),
        held=Fen(3000),
        refunded=Fen(3000),
        forfeited=Fen(0),
        wechat_deposits_held=Fen(6000),
    )
    assert broken.violations() == [
        "deposits received 9000 != held 3000 + refunded 3000 + forfeited 0 (fen)",
        "wechat:deposits_held holds 6000 fen but riders are owed 3000 fen",
    ]


def test_the_deposit_is_thirty_yuan_in_integer_fen() -> None:
    assert DEPOSIT == 3000
    assert type(DEPOSIT) is int


@pytest.mark.parametrize(
    ("amount", "plain", "signed"),
    [
        (3000, "30.00", "¥30.00"),
        (5, "0.05", "¥0.05"),
        (0, "0.00", "¥0.00"),
        (-1234, "-12.34", "-¥12.34"),
    ],
)
def test_yuan_are_only_a_display_form_of_fen(amount: int, plain: str, signed: str) -> None:
    assert yuan_str(Fen(amount)) == plain
    assert format_yuan(Fen(amount)) == signed


@pytest.mark.parametrize("value", [30.0, Decimal("30"), "3000", False])
def test_fen_refuses_anything_but_a_plain_integer(value: object) -> None:
    with pytest.raises(TypeError, match="integer number of fen"):
        fen(value)
    assert fen(-3) == -3


@pytest.mark.parametrize("kind", sorted(set(EntryKind) - set(RIDER_KINDS)))
def test_a_movement_that_concerns_no_rider_is_refused_as_a_rider_movement(
    kind: EntryKind,
) -> None:
    with pytest.raises(ValueError, match="not a rider's movement"):
        lines(kind)


def test_an_issued_invoice_credits_ad_revenue_and_debits_credits_per_kiosk() -> None:
    postings = rules.invoice_postings(
        EntryKind.AD_INVOICE_ISSUED,
        advertiser_id=7,
        revenue={"K1": Fen(1000), "K2": Fen(500)},
        credits={"K2": Fen(200)},
    )
    assert sum(p.amount for p in postings) == 0
    assert {(p.account, p.kiosk_id, p.amount) for p in postings} == {
        ("advertiser:7:receivable", None, 1300),
        (rules.REVENUE_ADS, "K1", -1000),
        (rules.REVENUE_ADS, "K2", -500),
        (rules.REVENUE_ADS_CREDITS, "K2", 200),
    }


def test_an_invoice_its_credits_cover_entirely_has_no_receivable_and_pays_nothing() -> None:
    issued = rules.invoice_postings(
        EntryKind.AD_INVOICE_ISSUED,
        advertiser_id=7,
        revenue={"K1": Fen(300)},
        credits={"K1": Fen(300)},
    )
    assert {p.account for p in issued} == {rules.REVENUE_ADS, rules.REVENUE_ADS_CREDITS}
    paid = rules.invoice_postings(
        EntryKind.AD_INVOICE_PAID,
        advertiser_id=7,
        revenue={"K1": Fen(300)},
        credits={"K1": Fen(300)},
    )
    assert paid == ()


def test_credits_larger_than_the_invoice_are_refused() -> None:
    with pytest.raises(ValueError, match="exceed"):
        rules.invoice_postings(
            EntryKind.AD_INVOICE_ISSUED,
            advertiser_id=7,
            revenue={"K1": Fen(1)},
            credits={"K1": Fen(2)},
        )


def test_a_partner_share_is_accrued_to_its_payable_and_paid_out_of_profit_sharing() -> None:
    accrued = rules.partner_share_postings(
        EntryKind.PARTNER_SHARE_ACCRUED, partner_id=3, amount=900
    )
    paid = rules.partner_share_postings(EntryKind.PARTNER_SHARE_PAID, partner_id=3, amount=900)
    assert by_account(accrued, paid) == {
        rules.EXPENSE_PARTNER_SHARE: 900,
        rules.WECHAT_PROFIT_SHARING: -900,
    }
    assert rules.account_type("partner:3:payable") is AccountType.LIABILITY
    with pytest.raises(InvalidAmount):
        rules.partner_share_postings(EntryKind.PARTNER_SHARE_PAID, partner_id=3, amount=0)
