"""The provisioning CSV the server's registry writes, read by the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_sim.credentials import (
    KioskCredential,
    generated_credentials,
    parse_credentials,
    read_credentials,
)


def test_reads_kiosk_id_and_password_columns_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "kiosks.csv"
    path.write_text("password,kiosk_id,city\npw1,K0001,SZ\npw2,K0002,GZ\n", encoding="utf-8")
    assert read_credentials(path) == [
        KioskCredential("K0001", "pw1"),
        KioskCredential("K0002", "pw2"),
    ]


def test_headerless_rows_are_kiosk_id_then_password() -> None:
    assert parse_credentials("K1,a\nK2,b\n") == [
        KioskCredential("K1", "a"),
        KioskCredential("K2", "b"),
    ]


def test_bad_or_duplicate_kiosk_ids_are_refused_with_the_row_number() -> None:
    with pytest.raises(ValueError, match="row 3: duplicate"):
        parse_credentials("kiosk_id,password\nK1,a\nK1,b\n")
    with pytest.raises(ValueError, match="row 2: bad kiosk id"):
        parse_credentials("kiosk_id,password\nK/1,a\n")


def test_passwords_never_show_in_repr() -> None:
    assert "secret" not in repr(KioskCredential("K1", "secret"))


def test_generated_credentials_are_unique_and_topic_safe() -> None:
    creds = generated_credentials(2000, "load")
    assert len({c.kiosk_id for c in creds}) == 2000
    assert creds[0].kiosk_id == "load0001"
