"""The simulated kiosks' "flash": `seq` and `conn` counters that survive the process.

Real firmware keeps both counters in flash (SPEC.md §5 and §6), so a kiosk never reuses a
sequence number: the cloud keeps `(kiosk, seq)` receipts and drops a repeat as a duplicate,
and it orders presence by `conn`. Without this file, every new simulator process would
start each kiosk at 0 again and a second run against the same database would be ignored.

The file is JSON, `{kiosk_id: {"seq": n, "conn": n}}`, and every value in it is a
**high-water mark**: no `seq`/`conn` the kiosk has used is above it. A kiosk starts from
the stored values (its next message uses `seq + 1`, its next connection `conn + 1`).

While a fleet runs, `FlashStore` does what SPEC.md §5 suggests to spare the flash: it
persists a reservation (`seq + SEQ_RESERVE`, `conn + CONN_RESERVE`) and writes again only
when a kiosk has used half of it; `Fleet.stop()` writes the exact values. So a clean stop
continues without gaps, and a process that dies without `stop()` (SIGKILL, an unhandled
SIGTERM) leaves gaps on the next start, never reuse. Writes are atomic (temporary file,
fsync, `os.replace`). Records of kiosks that are not in the fleet are kept as they are.

A file that cannot be read as such a mapping raises `FlashError`: quietly starting every
kiosk at 0 would bring back the duplicates this file exists to prevent. Delete the file
to start afresh on purpose.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from device_sim.kiosk import MAX_SEQ

SEQ_RESERVE = 256
CONN_RESERVE = 16


class FlashError(ValueError):
    """The flash file exists but is not a valid `{kiosk_id: {"seq": n, "conn": n}}` map."""


@dataclass(frozen=True, slots=True)
class FlashRecord:
    seq: int = 0
    conn: int = 0


def load_flash(path: Path) -> dict[str, FlashRecord]:
    """Read the flash file; a missing file is an empty flash (every kiosk starts at 0)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise FlashError(f"cannot read the simulator flash file {path}: {e}") from e
    hint = "delete it to start every kiosk at seq 0 (the cloud then drops repeats as duplicates)"
    try:
        data = json.loads(text)
    except ValueError as e:
        raise FlashError(f"simulator flash file {path} is not valid JSON ({e}); {hint}") from e
    if not isinstance(data, dict):
        raise FlashError(f"simulator flash file {path} is not a JSON object; {hint}")
    records: dict[str, FlashRecord] = {}
    for kiosk_id, value in data.items():
        if not isinstance(value, dict) or not all(_counter(value.get(k)) for k in ("seq", "conn")):
            raise FlashError(
                f"simulator flash file {path}: entry {kiosk_id!r} is not "
                f'{{"seq": n, "conn": n}} with 0 <= n <= {MAX_SEQ}; {hint}'
            )
        records[kiosk_id] = FlashRecord(value["seq"], value["conn"])
    return records


def save_flash(path: Path, records: Mapping[str, FlashRecord]) -> None:
    """Write atomically: a reader (or a crash) sees the old file or the new one."""
    lines = [
        f'{json.dumps(kid)}: {{"seq": {r.seq}, "conn": {r.conn}}}'
        for kid, r in sorted(records.items())
    ]
    payload = "{\n" + ",\n".join(lines) + "\n}" if lines else "{}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(payload + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _counter(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


class FlashStore:
    """The flash of a fleet's kiosks, kept in one file. Loop thread only after `load`.

    `counters` is read from the live kiosks: kiosk id -> (seq, conn).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = load_flash(path)
        self.saves = 0
        self._persisted: dict[str, FlashRecord] = dict(self.records)

    def initial(self, kiosk_id: str) -> FlashRecord:
        return self.records.get(kiosk_id, FlashRecord())

    def reserve(self, counters: Mapping[str, tuple[int, int]], *, force: bool = False) -> bool:
        """Persist fresh reservations if some kiosk has used half of its own (or `force`).
        Returns whether the file was written."""
        renew: dict[str, FlashRecord] = {}
        for kiosk_id, (seq, conn) in counters.items():
            held = self._persisted.get(kiosk_id)
            if (
                force
                or held is None
                or seq > held.seq - SEQ_RESERVE // 2
                or conn > held.conn - CONN_RESERVE // 2
            ):
                renew[kiosk_id] = FlashRecord(
                    min(MAX_SEQ, seq + SEQ_RESERVE), min(MAX_SEQ, conn + CONN_RESERVE)
                )
        if not renew:
            return False
        self._write({**self._persisted, **renew})
        return True

    def save_exact(self, counters: Mapping[str, tuple[int, int]]) -> None:
        """At a clean stop: the values in use, so the next run continues without a gap."""
        exact = {kid: FlashRecord(seq, conn) for kid, (seq, conn) in counters.items()}
        if any(self._persisted.get(kid) != rec for kid, rec in exact.items()):
            self._write({**self._persisted, **exact})

    def _write(self, records: dict[str, FlashRecord]) -> None:
        save_flash(self.path, records)
        self._persisted = records
        self.saves += 1
