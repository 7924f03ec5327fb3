"""A simulated advertiser for the demo: the B-side calls over real HTTP, against the public
advertiser and operator API (SPEC §4). Like the riders, it imports nothing from `server/`.

One run: an operator registers the advertiser; its user logs in, uploads a picture, submits
two creatives (a slogan, which waits for a person, and a price ad, which the automatic check
refuses naming the rule), an operator approves the slogan, the advertiser asks what is
free, books spots on the given kiosks for the next days, holds and confirms. The scheduler
then compiles the kiosks' playlists and pushes them; the simulated screens play them and
report each play.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx


@dataclass
class CampaignReport:
    advertiser_id: int = 0
    booking_id: int = 0
    price: str = ""
    kiosks: int = 0
    approved_creative: int = 0
    refused_creative: int = 0
    refused_rule: str = ""
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.errors:
            return "advertiser: " + "; ".join(self.errors)
        return (
            f"advertiser {self.advertiser_id}: creative {self.approved_creative} approved, "
            f"creative {self.refused_creative} refused by the price check "
            f"({self.refused_rule}); booking {self.booking_id} confirmed on {self.kiosks} "
            f"kiosks for {self.price}"
        )


def png(width: int = 16, height: int = 9, rgb: tuple[int, int, int] = (0, 120, 215)) -> bytes:
    """A small valid PNG of one colour (the demo's 'artwork')."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


class DemoAdvertiser:
    def __init__(
        self,
        api: str,
        *,
        name: str = "Rainy Day Tea",
        operator_headers: dict[str, str] | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        self.http = httpx.Client(base_url=api, timeout=timeout_s)
        self.name = name
        self.operator = operator_headers or {}

    def close(self) -> None:
        self.http.close()

    def _ok(self, r: httpx.Response, what: str) -> Any:
        if r.status_code >= 400:
            raise RuntimeError(f"{what}: {r.status_code} {r.text[:200]}")
        return r.json()

    def _login(self, login: str, password: str) -> dict[str, str]:
        body = self._ok(
            self.http.post("/api/v1/auth/login", json={"login": login, "password": password}),
            "log in",
        )
        return {"Authorization": f"Bearer {body['token']}"}

    def run(self, kiosk_ids: list[str], *, today: date, days: int = 3) -> CampaignReport:
        report = CampaignReport(kiosks=len(kiosk_ids))
        try:
            self._run(report, sorted(kiosk_ids), today, days)
        except (RuntimeError, httpx.HTTPError) as exc:
            report.errors.append(str(exc))
        return report

    def _run(self, report: CampaignReport, kiosk_ids: list[str], today: date, days: int) -> None:
        login, password = f"{self.name.lower().replace(' ', '-')}-{today:%Y%m%d}", "demo-password"
        r = self.http.post(
            "/api/v1/advertisers",
            json={
                "name": f"{self.name} {today:%Y-%m-%d}",
                "billing_mode": "prepaid",
                "lost_spot_policy": "make_good",
                "admin_login": login,
                "admin_password": password,
            },
            headers=self.operator,
        )
        if r.status_code != 409:  # 409: registered by an earlier demo run today
            report.advertiser_id = self._ok(r, "register the advertiser")["id"]
        me = self._login(login, password)
        report.advertiser_id = self._ok(self.http.get("/api/v1/auth/me", headers=me), "me")[
            "advertiser_id"
        ]
        media = self._ok(
            self.http.post(
                "/api/v1/ads/media",
                content=png(),
                headers={**me, "Content-Type": "image/png"},
            ),
            "upload the artwork",
        )
        slogan = self._ok(
            self.http.post(
                "/api/v1/ads/creatives",
                json={
                    "kind": "image",
                    "duration_ms": 10_000,
                    "title": "雨天出行，就近还伞",
                    "body_text": "Rainy Day Tea · 热茶暖心",
                    "sha256": media["sha256"],
                },
                headers=me,
            ),
            "submit the slogan",
        )
        price_ad = self._ok(
            self.http.post(
                "/api/v1/ads/creatives",
                json={
                    "kind": "image",
                    "duration_ms": 10_000,
                    "title": "奶茶特价",
                    "body_text": "原价25元，现价9.9元",
                    "sha256": media["sha256"],
                },
                headers=me,
            ),
            "submit the price ad",
        )
        report.refused_creative = price_ad["id"]
        report.refused_rule = (price_ad.get("check") or {}).get("rule", price_ad["status"])
        self._ok(
            self.http.post(
                f"/api/v1/ops/creatives/{slogan['id']}/approve",
                json={"note": "brand slogan, no price"},
                headers=self.operator,
            ),
            "approve the slogan",
        )
        report.approved_creative = slogan["id"]
        selection = {"kiosk_ids": kiosk_ids}
        end = today + timedelta(days=days - 1)
        self._ok(
            self.http.post(
                "/api/v1/ads/availability",
                json={"selection": selection, "start_date": str(today), "end_date": str(end)},
                headers=me,
            ),
            "ask what is free",
        )
        booking = self._ok(
            self.http.post(
                "/api/v1/ads/bookings",
                json={
                    "name": "Rainy season launch",
                    "spots_per_loop": 2,
                    "start_date": str(today),
                    "end_date": str(end),
                    "dayparts": "00-24",
                    "selection": selection,
                    "creative_ids": [slogan["id"]],
                },
                headers=me,
            ),
            "book",
        )
        self._ok(
            self.http.post(f"/api/v1/ads/bookings/{booking['id']}/hold", json={}, headers=me),
            "hold",
        )
        confirmed = self._ok(
            self.http.post(f"/api/v1/ads/bookings/{booking['id']}/confirm", headers=me),
            "confirm",
        )
        report.booking_id, report.price = confirmed["id"], confirmed["price"]
