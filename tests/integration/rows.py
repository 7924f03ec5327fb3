"""Registry rows the integration tests need before a bridge can accept a kiosk's uplinks."""

from __future__ import annotations

from server.core.clock import clock
from server.core.db import Database
from server.models import Kiosk, Partner


def add_kiosks(db: Database, *kiosk_ids: str, slot_count: int = 22) -> None:
    """One partner (named after the first kiosk) owning the given kiosks."""
    now = clock.now()
    with db.transaction() as s:
        partner = Partner(name=f"partner-{kiosk_ids[0]}", region="Hangzhou", created_at=now)
        s.add(partner)
        s.flush()
        for k in kiosk_ids:
            s.add(
                Kiosk(
                    id=k,
                    name=k,
                    partner_id=partner.id,
                    lat=30.27,
                    lon=120.15,
                    address="West Lake metro exit B",
                    venue_type="1.101",
                    slot_count=slot_count,
                    mqtt_password_hash="$7$unused",
                    created_at=now,
                )
            )
