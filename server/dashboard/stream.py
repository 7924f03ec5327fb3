"""The dashboard's live stream (Server-Sent Events): what changed since the last push.

Each poll reads a cheap change signal (dashboard.service.change_signal); only when it moved,
or every `refresh_s` (a new local day, counters), the tiles are read again and the ones whose
JSON differs from what this client was last sent are pushed."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from server.alerts.schemas import AlertOut
from server.core.clock import clock
from server.core.db import Database
from server.dashboard import service
from server.dashboard.schemas import KioskTileOut, TotalsOut


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@dataclass
class DashboardStream:
    db: Database
    partner_id: int | None
    refresh_s: float
    signal: tuple[Any, ...] | None = None
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    open_alerts: list[dict[str, Any]] | None = None
    refreshed: float = 0.0

    def poll(self) -> list[str]:
        """The events to push now (none when nothing changed). Blocking: run in a thread."""
        with self.db.transaction() as session:
            signal = service.change_signal(session, self.partner_id)
            due = time.monotonic() - self.refreshed >= self.refresh_s
            if signal == self.signal and not due:
                return []
            now = clock.now()
            d = service.dashboard(session, self.partner_id, now)
        self.signal = signal
        self.refreshed = time.monotonic()
        stamp = now.isoformat().replace("+00:00", "Z")
        events: list[str] = []
        full = not self.sent
        rows = {t.live.id: KioskTileOut.of(t).model_dump(mode="json") for t in d.tiles}
        changed = [row for kid, row in rows.items() if self.sent.get(kid) != row]
        gone = sorted(set(self.sent) - set(rows))
        self.sent = rows
        if changed or gone or full:
            totals = TotalsOut(**d.totals()).model_dump(mode="json")
            events.append(
                sse(
                    "kiosks",
                    {
                        "full": full,
                        "kiosks": changed,
                        "removed": gone,
                        "totals": totals,
                        "generated_at": stamp,
                    },
                )
            )
        alerts = [AlertOut.of(a).model_dump(mode="json") for a in d.alerts]
        if alerts != self.open_alerts:
            self.open_alerts = alerts
            events.append(sse("alerts", {"alerts": alerts, "generated_at": stamp}))
        return events
