"""The double-entry ledger (SPEC §3): accounts, journal entries, postings. Integer fen.

Sign convention: one signed column, `amount_fen`, **debits positive, credits negative**.
An entry balances when its postings sum to zero; an account's balance is the plain SUM of
its postings (assets carry a positive balance, liabilities and revenue a negative one).
The chart of accounts and the posting rules live in `server/ledger/rules.py`.

Every entry balances, enforced three times: the service refuses an unbalanced entry before
it flushes; on PostgreSQL a statement-level trigger (`PG_LEDGER_DDL`, which the Alembic
migrations also run) refuses the INSERT that leaves one; `check_invariants` reports one.
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
    Index,
    String,
    event,
    text,
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
    kiosk_id: Mapped[str | None] = mapped_column(String(32))

    entry: Mapped[JournalEntry] = relationship(back_populates="postings", lazy="raise")

    __table_args__ = (
        CheckConstraint("amount_fen <> 0", name="nonzero"),
        # Partial: most postings (deposits, refunds, forfeitures) carry no kiosk, and an
        # index entry for each of them is write cost that no query reads.
        Index(
            "ix_ledger_postings_kiosk_id",
            "kiosk_id",
            postgresql_where=text("kiosk_id IS NOT NULL"),
            sqlite_where=text("kiosk_id IS NOT NULL"),
        ),
    )


#: PostgreSQL only (`PG_LEDGER_DDL`, run by `create_all` below): an INSERT whose new
#: postings do not sum to zero for every entry they touch is refused. Postings are never
#: updated or deleted (`PG_LEDGER_APPEND_ONLY_DDL`), so if every statement's own rows
#: balance per entry, every entry balances: the check reads only the statement's new rows
#: (a transition table), one set-wise query per INSERT however many entries it writes (the
#: forfeiture sweep writes 20,000 postings in one), instead of a SUM over the table per
#: posting at COMMIT in a per-row trigger. So an entry's postings must arrive in one
#: statement, as `ledger.repository` writes them (`add_entry` flushes one entry's postings
#: at a time; `add_entries` writes them all in one INSERT). Alembic migration 0006 installs
#: it (0002, the append-only guard).
PG_LEDGER_BALANCE_DDL: Final[tuple[str, ...]] = (
    """
CREATE OR REPLACE FUNCTION ledger_entries_must_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT entry_id, SUM(amount_fen) AS total INTO bad
    FROM inserted_postings
    GROUP BY entry_id
    HAVING SUM(amount_fen) <> 0
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry does not balance'
            USING ERRCODE = 'check_violation',
                  DETAIL = 'entry ' || bad.entry_id || ' would be off by ' || bad.total || ' fen';
    END IF;
    RETURN NULL;
END $$
""",
    """
CREATE TRIGGER ledger_entries_balance
AFTER INSERT ON ledger_postings
REFERENCING NEW TABLE AS inserted_postings
FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_must_balance()
""",
)

#: Postings are append-only: a mistake is corrected by a reversing entry.
PG_LEDGER_APPEND_ONLY_DDL: Final[tuple[str, ...]] = (
    """
CREATE OR REPLACE FUNCTION ledger_postings_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger postings are append-only; post a reversing entry instead'
        USING ERRCODE = 'restrict_violation';
END $$
""",
    """
CREATE TRIGGER ledger_postings_append_only
BEFORE UPDATE OR DELETE ON ledger_postings
FOR EACH ROW EXECUTE FUNCTION ledger_postings_are_append_only()
""",
)

PG_LEDGER_DDL: Final[tuple[str, ...]] = (*PG_LEDGER_APPEND_ONLY_DDL, *PG_LEDGER_BALANCE_DDL)

PG_LEDGER_BALANCE_DROP_DDL: Final[tuple[str, ...]] = (
    "DROP TRIGGER IF EXISTS ledger_entries_balance ON ledger_postings",
    "DROP FUNCTION IF EXISTS ledger_entries_must_balance()",
)

for _statement in PG_LEDGER_DDL:
    event.listen(
        Posting.__table__,
        "after_create",
        DDL(_statement).execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
    )
