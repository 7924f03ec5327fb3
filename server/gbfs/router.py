"""HTTP only: the public GBFS 3.0 feed under /gbfs/v3."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/gbfs/v3", tags=["gbfs"])
