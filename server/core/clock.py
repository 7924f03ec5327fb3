"""The one clock. Tests move it instead of sleeping (CONVENTIONS: Time and money)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def now_ms(self) -> int:
        return int(time.time() * 1000) + int(self._offset.total_seconds() * 1000)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)


clock = Clock()


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)
