"""Where the browser tests save their screenshots: ``$SYNC_SCREENSHOTS_DIR`` when set (to look at them after
the run), else the test's temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

SCREENSHOTS_ENV = "SYNC_SCREENSHOTS_DIR"


def screenshot_dir(tmp_path: Path) -> Path:
    """The folder for this test's screenshots (created)."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
