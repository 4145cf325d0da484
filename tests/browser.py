"""Headless Chromium for the browser tests: Debian's package, driven by Playwright.

CI installs chromium (.ci/run), so there a missing browser is a failure; elsewhere the
browser tests are skipped with a hint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator

import pytest

# The flags the machine needs: no sandbox as root, no GPU, and no background traffic
# (the closed network refuses it, many connections at a time).
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """Chromium's path; skips the test where it is missing (fails in CI)."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium for the browser test")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def launch(playwright):  # -> playwright.sync_api.Browser
    """A headless Chromium with the flags above."""
    return playwright.chromium.launch(executable_path=require_chromium(), args=ARGS)


@contextlib.contextmanager
def open_page(url: str, width: int = 1400, height: int = 1100) -> Iterator:  # Iterator[playwright Page]
    """A fresh headless Chromium showing ``url`` at ``width`` x ``height``; closed afterwards."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            yield page
        finally:
            browser.close()
