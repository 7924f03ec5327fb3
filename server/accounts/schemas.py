"""Pydantic I/O for /api/v1/auth, /api/v1/advertisers and /api/v1/users."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from server.models import BillingMode, LostSpotPolicy, Role


class LoginIn(BaseModel):
    login: str = Field(min_length=1, max_length=120)
    password: str = Field(min_length=1, max_length=200)


class MeOut(BaseModel):
    role: Role
    user_id: int | None
    login: str
    advertiser_id: int | None
    partner_id: int | None


class LoginOut(MeOut):
    token: str
    expires_at: datetime


class AdvertiserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    billing_mode: BillingMode = BillingMode.PREPAID
    lost_spot_policy: LostSpotPolicy = LostSpotPolicy.MAKE_GOOD
    #: The advertiser's first user, created with it.
    admin_login: str = Field(min_length=3, max_length=120)
    admin_password: str = Field(min_length=8, max_length=200)


class AdvertiserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    billing_mode: BillingMode
    lost_spot_policy: LostSpotPolicy
    created_at: datetime


class UserCreate(BaseModel):
    login: str = Field(min_length=3, max_length=120)
    password: str = Field(min_length=8, max_length=200)
    role: Role
    display_name: str = Field(default="", max_length=120)
    advertiser_id: int | None = None
    partner_id: int | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    login: str
    display_name: str
    role: Role
    advertiser_id: int | None
    partner_id: int | None
    created_at: datetime
