"""`umbrella demo` as a newcomer runs it (SPEC §6: the embedded default runs the whole system
with simulated kiosks and riders), in its own process on a fresh data directory: riders log
in, pay the deposit through the WeChat stand-in, rent, return and withdraw over HTTP, and the
run ends cleanly with the ledger invariants holding."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def run_demo(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UMB_")}
    env.update(
        UMB_DATA_DIR=str(data_dir),
        UMB_API_PORT=str(free_port()),
        UMB_MQTT_PORT=str(free_port()),
        COLUMNS="200",
        TERM="dumb",
    )
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def counter(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in the summary:\n{text}"
    return int(found.group(1))


def test_demo_riders_rent_and_return_umbrellas_and_the_ledger_holds(tmp_path: Path) -> None:
    done = run_demo(
        tmp_path,
        *("--kiosks", "3", "--riders", "4", "--rider-pace", "4"),
        *("--heartbeat-s", "5", "--duration", "12"),
    )

    out = done.stdout
    summary = out[out.rindex("summary:") :] if "summary:" in out else out
    log_file = tmp_path / "demo.log"  # every warning and error, with tracebacks
    log = log_file.read_text()[-4000:] if log_file.exists() else ""
    assert done.returncode == 0, f"{summary}\n{done.stderr[-3000:]}\n{log}"
    riders = next(line for line in summary.splitlines() if line.startswith("riders "))
    rentals = counter(r"rentals (\d+) ok", riders)
    assert rentals >= 2
    assert counter(r"logins (\d+)", riders) >= 4
    assert counter(r"deposits held (\d+)", riders) >= 4
    assert counter(r"returns (\d+)", riders) == rentals  # every umbrella came back
    assert counter(r"unexpected (\d+)", riders) == 0, f"{riders}\n{log}"
    assert "umbrellas still out at the end: 0" in summary
    assert "ledger invariants: ok (check_invariants() == [])" in summary
    assert "threads left: none" in summary
    # The demo advertiser: the slogan approved, the price ad refused naming its rule, a
    # confirmed booking, and every kiosk acknowledged the playlist the scheduler pushed.
    assert re.search(r"creative \d+ refused by the price check \(\w+\)", summary), summary
    assert re.search(r"booking \d+ confirmed on 3 kiosks for ¥\d+\.\d\d", summary), summary
    assert "screens: 3 of 3 kiosks acknowledged a playlist" in summary, f"{summary}\n{log}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
