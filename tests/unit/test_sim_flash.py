"""The simulator's "flash": seq and conn survive the process (SPEC.md §5: never reused)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device_sim import Fleet
from device_sim.cli import _flash_file, _parser, main
from device_sim.credentials import generated_credentials
from device_sim.flash import (
    CONN_RESERVE,
    SEQ_RESERVE,
    FlashError,
    FlashRecord,
    load_flash,
    save_flash,
)
from firmware_protocol import decode_uplink
from firmware_protocol.messages import Boot, Offline, Online, UplinkMessage
from tests.services import require

HOST, PORT = "127.0.0.1", 1883
NOBODY = 1  # nothing listens on port 1: connection attempts fail, kiosks buffer


def offline_fleet(flash: Path, n: int = 2, prefix: str = "fl") -> Fleet:
    return Fleet(generated_credentials(n, prefix), "127.0.0.1", NOBODY, flash_file=flash)


def test_a_missing_flash_file_starts_every_kiosk_at_zero(tmp_path: Path) -> None:
    flash = tmp_path / "flash.json"
    fleet = offline_fleet(flash)
    assert [(k.seq, k.conn) for k in fleet] == [(0, 0), (0, 0)]
    assert not flash.exists()  # nothing is written before the fleet starts
    fleet.stop()


def test_a_new_fleet_continues_seq_and_conn_after_a_clean_stop(tmp_path: Path) -> None:
    flash = tmp_path / "flash.json"
    with offline_fleet(flash) as fleet:
        k = fleet.kiosk("fl0001")
        assert [k.heartbeat().seq for _ in range(3)] == [1, 2, 3]
        seq, conn = k.seq, k.conn
        assert conn >= 1  # the first CONNECT attempt used conn 1
    assert load_flash(flash)["fl0001"] == FlashRecord(seq, conn)  # exact at stop()

    with offline_fleet(flash) as again:
        k = again.kiosk("fl0001")
        assert k.conn == conn + 1  # started connecting: the next conn
        assert k.heartbeat().seq == seq + 1  # no gap after a clean stop
        assert again.kiosk("fl0002").seq == 0  # never sent anything


def test_while_running_the_file_stays_ahead_so_a_crash_leaves_gaps_not_reuse(
    tmp_path: Path,
) -> None:
    flash = tmp_path / "flash.json"
    crashed = tmp_path / "crashed.json"
    with offline_fleet(flash) as fleet:
        k = fleet.kiosk("fl0001")
        for _ in range(SEQ_RESERVE // 2 + 5):  # use up half the reservation
            k.heartbeat()
        seq, conn = k.seq, k.conn

        def renewed() -> bool:
            return load_flash(flash)["fl0001"].seq >= seq + SEQ_RESERVE // 2

        fleet.call(lambda: fleet._reserve_flash())  # what the 1 s timer does
        assert renewed()
        crashed.write_bytes(flash.read_bytes())  # the file as a SIGKILL would leave it
    held = load_flash(crashed)["fl0001"]
    assert held.seq > seq
    assert held.conn >= conn + CONN_RESERVE // 2
    with offline_fleet(crashed) as after_crash:
        assert after_crash.kiosk("fl0001").heartbeat().seq > seq
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_records_of_kiosks_outside_the_fleet_are_kept(tmp_path: Path) -> None:
    flash = tmp_path / "flash.json"
    save_flash(flash, {"other": FlashRecord(41, 7)})
    with offline_fleet(flash, n=1) as fleet:
        fleet.kiosk("fl0001").heartbeat()
    records = load_flash(flash)
    assert records["other"] == FlashRecord(41, 7)
    assert records["fl0001"].seq == 1


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"K1": 3}',
        '{"K1": {"seq": 1}}',
        '{"K1": {"seq": -1, "conn": 0}}',
        '{"K1": {"seq": true, "conn": 0}}',
        '{"K1": {"seq": 1.5, "conn": 0}}',
        '{"K1": {"seq": 4294967296, "conn": 0}}',
    ],
)
def test_a_corrupt_flash_file_is_an_error_not_a_silent_restart_at_zero(
    tmp_path: Path, content: str
) -> None:
    flash = tmp_path / "flash.json"
    flash.write_text(content)
    with pytest.raises(FlashError, match="delete it"):
        offline_fleet(flash)
    assert flash.read_text() == content  # left alone for a human to look at


def test_cli_flash_defaults_beside_the_credentials_and_reports_a_corrupt_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parse = _parser().parse_args
    creds = tmp_path / "kiosks.csv"
    assert _flash_file(parse(["fleet", "--credentials", str(creds)])) == tmp_path / (
        "kiosks.csv.flash.json"
    )
    assert _flash_file(parse(["fleet", "--count", "3"])) is None
    own = tmp_path / "own.json"
    assert _flash_file(parse(["scenario", "churn", "--count", "3", "--flash", str(own)])) == own

    own.write_text("{broken")
    args = ["fleet", "--count", "1", "--port", str(NOBODY), "--flash", str(own)]
    assert main([*args, "--duration", "0.1"]) == 2
    assert "own.json is not valid JSON" in capsys.readouterr().out.replace("\n", "")


def test_over_a_broker_the_second_run_continues_where_the_first_stopped(
    tmp_path: Path,
) -> None:
    """What the cloud sees: no repeated (kiosk, seq), and a newer conn."""
    require("Mosquitto", HOST, PORT)
    prefix = f"t{uuid.uuid4().hex[:8]}f"
    got: list[UplinkMessage] = []
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, m: mqtt.MQTTMessage) -> None:
        if m.topic.split("/")[2].startswith(prefix):
            with lock:
                got.append(decode_uplink(m.topic, bytes(m.payload)))

    cloud = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    cloud.on_message = on_message
    cloud.connect(HOST, PORT)
    cloud.subscribe("umb/1/+/up/+", qos=1)
    cloud.loop_start()
    try:
        flash = tmp_path / "flash.json"
        creds = generated_credentials(3, prefix)
        for _ in range(2):
            with Fleet(creds, HOST, PORT, heartbeat_s=0.2, flash_file=flash) as fleet:
                fleet.wait_all_online(timeout=20)
                for k in fleet:
                    k.wait_uplink(lambda m: m.seq >= 3 and not isinstance(m, Online))
                    k.wait_drained()

        def both_runs_ended() -> bool:
            with lock:
                return sum(isinstance(m, Offline) for m in got) == 6

        deadline = time.monotonic() + 10
        while not both_runs_ended() and time.monotonic() < deadline:
            time.sleep(0.05)
        with lock:
            msgs = list(got)
    finally:
        cloud.disconnect()
        cloud.loop_stop()
    assert both_runs_ended()
    for c in creds:
        mine = [m for m in msgs if m.kiosk_id == c.kiosk_id]
        onlines = [i for i, m in enumerate(mine) if isinstance(m, Online)]
        assert [m.conn for m in mine if isinstance(m, Online)] == [1, 2]
        assert [m.conn for m in mine if isinstance(m, Boot)] == [1, 2]

        def seqs(part: list[UplinkMessage]) -> list[int]:
            return [m.seq for m in part if not isinstance(m, Online | Offline)]

        first, second = seqs(mine[: onlines[1]]), seqs(mine[onlines[1] :])
        assert len(first) >= 3
        assert second
        assert min(second) > max(first), "the second run reused a seq"
    assert json.loads(flash.read_text()).keys() == {c.kiosk_id for c in creds}
