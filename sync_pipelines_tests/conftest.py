"""Shared fixtures: fresh databases on the real SQLite, PostgreSQL and MariaDB servers of this machine
(``support/databases.py``), and every test's own staging folder and Dagster home.

PostgreSQL (127.0.0.1:5432, trust auth) and MariaDB (127.0.0.1:3306, root without password) must be
running (``scripts/ensure-services`` starts them); a test that cannot reach them fails, never skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync_pipelines_tests.factories import three_syncs
from sync_pipelines_tests.support.databases import BACKENDS, OUTAGE_SECRET, Databases, make_databases

TESTS = Path(__file__).parent
BROWSER_MODULES = {"test_web_browser.py", "test_ui_status.py", "test_web_forms_browser.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder: ``e2e`` under ``e2e/`` (whole deployments), ``unit`` everywhere else;
    ``browser`` for the tests that drive Chromium."""
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        item.add_marker(pytest.mark.e2e if folder == "e2e" else pytest.mark.unit)
        if item.path.name in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(params=BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """A fresh source and target database, once per backend."""
    yield from make_databases(request.param, tmp_path)


@pytest.fixture
def sqlite_dbs(tmp_path: Path) -> Iterator[Databases]:
    """A fresh SQLite source and target."""
    yield from make_databases("sqlite", tmp_path)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep staging and Dagster state of every test inside its own temporary folder."""
    monkeypatch.setenv("SYNC_PIPELINES_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.delenv("SYNC_PIPELINES_IO_DIR", raising=False)
    monkeypatch.delenv("SYNC_PIPELINES_HISTORY_URL", raising=False)  # links point at the default history view
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir(exist_ok=True)


@pytest.fixture
def pg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """PostgreSQL source and target whose URLs carry a password from ``${SYNC_OUTAGE_PW}``."""
    monkeypatch.setenv("SYNC_OUTAGE_PW", OUTAGE_SECRET)
    gen = make_databases("postgresql", tmp_path)
    dbs = next(gen)
    yield dbs
    for _ in gen:
        pass


@pytest.fixture
def syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three syncs over SQLite (``factories.three_syncs``), the config folder set and ``tmp_path`` current."""
    monkeypatch.chdir(tmp_path)
    folder = three_syncs(tmp_path)
    monkeypatch.setenv("SYNC_PIPELINES_CONFIG_DIR", str(folder))
    return folder


pytest_plugins = ["sync_pipelines_tests.support.es", "sync_pipelines_tests.support.http_api"]
