"""HTTP only: the billing endpoints (advertiser-side under /api/v1/ads, operator-side under
/api/v1/ops)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["billing"])
