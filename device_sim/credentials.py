"""Kiosk credentials from the provisioning CSV the server's registry writes.

Format: UTF-8 CSV with the header `kiosk_id,password` (extra columns are ignored), one
kiosk per row. A file without a header is read as `kiosk_id,password` rows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from firmware_protocol.topics import KIOSK_ID_RE


@dataclass(frozen=True, slots=True)
class KioskCredential:
    kiosk_id: str
    password: str

    def __repr__(self) -> str:  # never print a password in logs or test output
        return f"KioskCredential(kiosk_id={self.kiosk_id!r}, password='***')"


def parse_credentials(text: str) -> list[KioskCredential]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    if "kiosk_id" in header and "password" in header:
        id_col, pw_col = header.index("kiosk_id"), header.index("password")
        rows, first = rows[1:], 2
    else:
        id_col, pw_col, first = 0, 1, 1
    out: list[KioskCredential] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=first):
        if len(row) <= max(id_col, pw_col):
            raise ValueError(f"credentials row {n}: expected kiosk_id,password")
        kiosk_id, password = row[id_col].strip(), row[pw_col].strip()
        if not KIOSK_ID_RE.match(kiosk_id):
            raise ValueError(f"credentials row {n}: bad kiosk id {kiosk_id[:40]!r}")
        if kiosk_id in seen:
            raise ValueError(f"credentials row {n}: duplicate kiosk id {kiosk_id!r}")
        seen.add(kiosk_id)
        out.append(KioskCredential(kiosk_id, password))
    return out


def read_credentials(path: str | Path) -> list[KioskCredential]:
    return parse_credentials(Path(path).read_text(encoding="utf-8-sig"))


def generated_credentials(
    count: int, prefix: str = "sim", password: str = "sim"
) -> list[KioskCredential]:
    """Made-up kiosks for a broker that allows anonymous clients (load tests, demos)."""
    width = max(4, len(str(count)))
    return [KioskCredential(f"{prefix}{i:0{width}d}", password) for i in range(1, count + 1)]
