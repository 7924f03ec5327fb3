"""A real headless Chromium for the console page tests: Debian's `chromium` package driven by
Playwright (no browser is ever downloaded: never `playwright install`). Screenshots go to
test-artifacts/screenshots/ (gitignored; CI keeps them as artifacts).

Without the binary the tests skip on a developer machine and fail under CI=true."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.services import in_ci

CHROMIUM = os.environ.get("UMB_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
#: How long a page may take to show what the server did (the live stream pushes within ~2 s).
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)


def require_chromium() -> str:
    path = CHROMIUM if os.path.isabs(CHROMIUM) else shutil.which(CHROMIUM)
    if path and os.access(path, os.X_OK):
        return path
    message = f"no Chromium at {CHROMIUM} (apt-get install -y chromium; or set UMB_TEST_CHROMIUM)"
    if in_ci():
        pytest.fail(message + " (CI=true: the console page tests must run)")
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Browser]:
    executable = require_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class PageErrors:
    """Uncaught exceptions and console errors of a page: a page test fails on any of them."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "response",
            lambda r: (
                self.errors.append(f"http {r.status} {r.request.method} {r.url}")
                if r.status >= 400
                else None
            ),
        )
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )

    def unexpected(self, *allowed: str) -> list[str]:
        """Errors not matching any of the `allowed` regular expressions."""
        return [e for e in self.errors if not any(re.search(a, e) for a in allowed)]


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
