"""People who log in to the console and the B-side API (SPEC §4, §5): platform operators,
city partners' staff and advertisers' staff. Riders are not here (they log in with WeChat,
models/rider.py)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base, enum_values


class Role(enum.StrEnum):
    OPERATOR = "operator"
    PARTNER = "partner"
    ADVERTISER = "advertiser"


class BillingMode(enum.StrEnum):
    """SPEC §4 Billing: pay each order up front, or one statement a month (issued on the
    1st, due on the 20th)."""

    PREPAID = "prepaid"
    MONTHLY = "monthly"


class LostSpotPolicy(enum.StrEnum):
    """What the contract says about spots lost to an offline kiosk (SPEC §4)."""

    MAKE_GOOD = "make_good"
    CREDIT = "credit"


class Advertiser(Base):
    __tablename__ = "advertisers"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    billing_mode: Mapped[BillingMode] = mapped_column(
        Enum(BillingMode, native_enum=False, length=16, values_callable=enum_values)
    )
    lost_spot_policy: Mapped[LostSpotPolicy] = mapped_column(
        Enum(LostSpotPolicy, native_enum=False, length=16, values_callable=enum_values)
    )
    created_at: Mapped[datetime]


class User(Base):
    """A console/API user. An advertiser's users carry `advertiser_id`, a partner's users
    `partner_id`, operators neither; the CHECK keeps a user in exactly one tenant."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    login: Mapped[str] = mapped_column(String(120), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    #: scrypt, "scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>" (accounts/rules.py).
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=enum_values)
    )
    advertiser_id: Mapped[int | None] = mapped_column(ForeignKey("advertisers.id"), index=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(
            "(role = 'operator' AND advertiser_id IS NULL AND partner_id IS NULL)"
            " OR (role = 'advertiser' AND advertiser_id IS NOT NULL AND partner_id IS NULL)"
            " OR (role = 'partner' AND partner_id IS NOT NULL AND advertiser_id IS NULL)",
            name="one_tenant",
        ),
    )


class UserSession(Base):
    """One login; only the SHA-256 of the bearer token is stored."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
