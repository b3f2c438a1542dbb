"""Fixtures of the whole-deployment tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_pipelines_tests.support.webserver import Webserver, run_webserver


@pytest.fixture
def webserver(tmp_path: Path) -> Iterator[Webserver]:
    """``dagster-webserver`` on a free port, loading ``sync_pipelines.definitions`` from ``tmp_path/syncs``."""
    yield from run_webserver(tmp_path)
