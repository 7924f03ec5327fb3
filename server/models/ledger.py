"""The double-entry ledger (SPEC §3): accounts, journal entries, postings. Integer fen.

Sign convention: one signed column, `amount_fen`, **debits positive, credits negative**.
An entry balances when its postings sum to zero; an account's balance is the plain SUM of
its postings (assets carry a positive balance, liabilities and revenue a negative one).
The chart of accounts and the posting rules live in `server/ledger/rules.py`.

Every entry balances, enforced three times: the service refuses an unbalanced entry before
it flushes; on PostgreSQL a deferred constraint trigger (`PG_LEDGER_DDL`, which the
Alembic migration must also run) refuses to commit one; `check_invariants` reports one.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Final

from sqlalchemy import (
    DDL,
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    String,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.models.base import ID, Base


class AccountType(enum.StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    REVENUE = "revenue"
    EXPENSE = "expense"


class EntryKind(enum.StrEnum):
    """The money movements of SPEC §2-3, and advertisers' invoices (SPEC §4 Billing)."""

    DEPOSIT_RECEIVED = "deposit_received"
    DEPOSIT_REFUNDED = "deposit_refunded"
    DEPOSIT_FORFEITED = "deposit_forfeited"
    FORFEITURE_REVERSED = "forfeiture_reversed"
    AD_INVOICE_ISSUED = "ad_invoice_issued"
    AD_INVOICE_PAID = "ad_invoice_paid"
    #: A partner's revenue share for a statement period (SPEC §5), and its payout.
    PARTNER_SHARE_ACCRUED = "partner_share_accrued"
    PARTNER_SHARE_PAID = "partner_share_paid"


class LedgerAccount(Base):
    """One account of the chart (`server/ledger/rules.py`); rider accounts appear on demand."""

    __tablename__ = "ledger_accounts"

    #: e.g. "wechat:deposits_held", "rider:42:deposit", "revenue:forfeited_deposits".
    code: Mapped[str] = mapped_column(String(96), primary_key=True)
    type: Mapped[AccountType] = mapped_column(Enum(AccountType, native_enum=False, length=16))
    #: Set on the per-rider deposit liability accounts, None on the platform's own accounts.
    rider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime]


class JournalEntry(Base):
    """One money movement. `idempotency_key` is UNIQUE: the same money event (a WeChat Pay
    notification, a refund, a forfeiture run) can never be posted twice (SPEC §3)."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    kind: Mapped[EntryKind] = mapped_column(Enum(EntryKind, native_enum=False, length=32))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    #: The rider whose deposit moved; None for movements that concern no rider (an
    #: advertiser's invoice: its accounts name the advertiser).
    rider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    #: The movement's size, always positive; the postings carry the signs.
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    #: What caused it, "<type>:<id>": "payment:<out_trade_no>", "refund:<out_refund_no>",
    #: "rental:<id>", "invoice:<id>". A string because those tables are owned by other domains.
    reference: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime]

    postings: Mapped[list[Posting]] = relationship(
        back_populates="entry", order_by="Posting.id", lazy="raise"
    )

    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_positive"),)


class Posting(Base):
    """One leg of an entry: debit positive, credit negative, never zero."""

    __tablename__ = "ledger_postings"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    account_code: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.code"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    #: The kiosk the amount is attributable to, on ad revenue and its credits (partners'
    #: revenue share, SPEC §5); None elsewhere. No foreign key: the ledger is append-only
    #: history and outlives registry rows.
    kiosk_id: Mapped[str | None] = mapped_column(String(32), index=True)

    entry: Mapped[JournalEntry] = relationship(back_populates="postings", lazy="raise")

    __table_args__ = (CheckConstraint("amount_fen <> 0", name="nonzero"),)


#: PostgreSQL only: postings are append-only, and an entry whose postings do not sum to zero
#: cannot commit (a deferred constraint trigger checks each touched entry at COMMIT). Run by
#: `create_all` below; the Alembic migration must run the same statements (`op.execute`).
PG_LEDGER_DDL: Final[tuple[str, ...]] = (
    """
CREATE OR REPLACE FUNCTION ledger_entry_must_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
BEGIN
    SELECT COALESCE(SUM(amount_fen), 0) INTO total
    FROM ledger_postings WHERE entry_id = NEW.entry_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger entry does not balance'
            USING ERRCODE = 'check_violation',
                  DETAIL = 'entry ' || NEW.entry_id || ' sums to ' || total || ' fen';
    END IF;
    RETURN NULL;
END $$
""",
    """
CREATE OR REPLACE FUNCTION ledger_postings_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger postings are append-only; post a reversing entry instead'
        USING ERRCODE = 'restrict_violation';
END $$
""",
    """
CREATE CONSTRAINT TRIGGER ledger_entry_balances
AFTER INSERT ON ledger_postings
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION ledger_entry_must_balance()
""",
    """
CREATE TRIGGER ledger_postings_append_only
BEFORE UPDATE OR DELETE ON ledger_postings
FOR EACH ROW EXECUTE FUNCTION ledger_postings_are_append_only()
""",
)

PG_LEDGER_DROP_DDL: Final[tuple[str, ...]] = (
    "DROP TRIGGER IF EXISTS ledger_postings_append_only ON ledger_postings",
    "DROP TRIGGER IF EXISTS ledger_entry_balances ON ledger_postings",
    "DROP FUNCTION IF EXISTS ledger_postings_are_append_only()",
    "DROP FUNCTION IF EXISTS ledger_entry_must_balance()",
)

for _statement in PG_LEDGER_DDL:
    event.listen(
        Posting.__table__,
        "after_create",
        DDL(_statement).execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
    )
