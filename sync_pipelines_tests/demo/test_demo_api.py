"""The demo's directory API (served by Uvicorn over the demo's directory database) and the
``directory_api_users`` sync that reads it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from sync_pipelines.config import load_configs
from sync_pipelines.demo.directory_api import API_TOKEN_ENV, API_URL_ENV, directory_api_demo, serving
from sync_pipelines.demo.sources import USER_COUNT, build_demo_databases
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import run

REPO = Path(__file__).resolve().parents[2]


def test_the_api_pages_users_behind_a_bearer_token(tmp_path: Path) -> None:
    build_demo_databases(tmp_path)
    with serving(tmp_path / "directory.db", "demo-token-123") as url:
        refused = requests.get(f"{url}/api/v1/users", timeout=10)
        headers = {"Authorization": "Bearer demo-token-123"}
        page = requests.get(f"{url}/api/v1/users", params={"page": 2, "page_size": 10}, headers=headers, timeout=10)
        departments = requests.get(f"{url}/api/v1/departments", params={"page_size": 500}, headers=headers, timeout=10)
        since = requests.get(
            f"{url}/api/v1/users", params={"updated_since": "2100-01-01T00:00:00Z"}, headers=headers, timeout=10
        )
    assert refused.status_code == 401
    items = page.json()["data"]["items"]
    assert [u["id"] for u in items] == list(range(11, 21))
    assert set(items[0]) == {"id", "username", "profile", "department", "active", "updated_at"}
    assert items[0]["updated_at"].endswith("Z") and "@" in items[0]["profile"]["email"]
    assert len(departments.json()["data"]["items"]) == 32
    assert since.json()["data"]["items"] == []


def test_the_demo_sync_loads_the_directory_from_the_api_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(API_URL_ENV, raising=False)
    monkeypatch.delenv(API_TOKEN_ENV, raising=False)
    [config] = [c for c in load_configs(REPO / "syncs") if c.name == "directory_api_users"]
    with directory_api_demo([config], tmp_path / "demo") as note:
        assert note is not None and os.environ[API_URL_ENV] in note
        first = run(config, "demo-1")
        second = run(config, "demo-2")
    assert API_URL_ENV not in os.environ and API_TOKEN_ENV not in os.environ
    assert first.status is RunStatus.COMPLETED and first.counts.created == USER_COUNT
    assert second.status is RunStatus.COMPLETED and second.counts.processed == 0
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'demo' / 'app.db'}")
    with engine.connect() as conn:
        emails = conn.execute(sa.text("SELECT count(*) FROM api_users WHERE email LIKE '%@example.com'")).scalar()
    engine.dispose()
    assert emails == USER_COUNT
