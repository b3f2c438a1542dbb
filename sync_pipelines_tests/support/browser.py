"""The browser tests' Chromium (Debian's, driven by Playwright) and the folder of their screenshots:
``$SYNC_SCREENSHOTS_DIR`` when set (to look at them after the run), else the test's temporary folder."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sync_pipelines_tests.support.live import CHROMIUM, CHROMIUM_FLAGS

SCREENSHOTS_ENV = "SYNC_SCREENSHOTS_DIR"


def screenshot_dir(tmp_path: Path) -> Path:
    """The folder for this test's screenshots (created)."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (``/usr/bin/chromium``; ``playwright install`` is never run), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
