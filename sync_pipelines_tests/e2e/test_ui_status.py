"""What the Dagster UI says about sync runs, in Debian's Chromium: partial runs, dry runs, users,
statistics that fit the page, a partitioned asset that is not empty.

A live webserver and daemon (see ``live.py``) serve syncs between SQLite files. The screenshots go
to the test's tmp folder, never into the repository.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from sync_pipelines_tests.factories import make_source
from sync_pipelines_tests.support.live import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    LIVE_PEOPLE,
    LiveDagster,
    live_sync_config,
    people_rows,
)

FAILING = 4
"""People whose score cannot be cast (ids 10, 20, 30, 40): a partial run of 40 records."""
SCORED = "SELECT id, name, CASE WHEN id % 10 = 0 THEN 'n/a' ELSE CAST(id AS TEXT) END AS score, updated_at FROM people"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDagster]:
    root = tmp_path_factory.mktemp("ui")
    make_source(root / "source.db", people_rows(), LIVE_PEOPLE)
    folder = root / "syncs"
    folder.mkdir()
    scored = live_sync_config(root, "ui_scored", max_failure_ratio=0.2)
    scored["source"] = {"kind": "sql", "url": scored["source"]["url"], "query": SCORED}
    scored["mapping"] = {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "score": {"type": "integer"},
        "updated_at": {"type": "datetime"},
    }
    syncs = {
        "ui_scored": scored,
        "ui_people": live_sync_config(root, "ui_people"),
        "ui_days": live_sync_config(root, "ui_days", partitions={"granularity": "daily", "start": "2024-01-01"}),
    }
    for name, data in syncs.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {"SYNC_PIPELINES_CONFIG_DIR": str(folder), "SYNC_PIPELINES_STAGING_DIR": str(root / "staging")}
    dagster = LiveDagster(root, "sync_pipelines.definitions", env)
    try:
        dagster.start()
        assert dagster.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True  # no welcome dialog
        yield dagster
    finally:
        dagster.stop()


CHECK_EVALUATIONS = """
query Checks($key: AssetKeyInput!, $name: String!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetCheckOrError(checkName: $name) {
        ... on AssetCheck { executionForLatestMaterialization { status evaluation { severity success } } }
      }
    }
  }
}
"""

PARTITION_STATS = """
query Stats($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode { partitionStats { numMaterialized numPartitions } }
  }
}
"""


def latest_check(live: LiveDagster, asset: str, check: str) -> dict[str, Any]:
    data = live.graphql(CHECK_EVALUATIONS, key={"path": [asset]}, name=check)
    execution = data["assetNodeOrError"]["assetCheckOrError"]["executionForLatestMaterialization"]
    return dict(execution)


def browser_page(playwright: Any, width: int = 1600) -> tuple[Any, Any]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
    return browser, browser.new_page(viewport={"width": width, "height": 1000})


def test_a_partial_run_warns_and_a_dry_run_is_tagged_with_the_launchpad_user(live: LiveDagster, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    partial = live.wait_finished(live.launch("sync_ui_scored", {"user": "erin"}))
    dry = live.wait_finished(live.launch("sync_ui_people", {"dry_run": True, "user": "erin"}))

    assert partial.status == "SUCCESS" and partial.tags["sync/status"] == "partial"
    assert partial.tags["sync/user"] == "erin" and "sync/dry_run" not in partial.tags
    assert dry.status == "SUCCESS" and dry.tags["sync/dry_run"] == "true" and dry.tags["sync/user"] == "erin"
    warning = latest_check(live, "ui_scored", "no_failed_records")
    assert warning["status"] == "FAILED"
    assert warning["evaluation"] == {"severity": "WARN", "success": False}

    with sync_playwright() as playwright:
        browser, page = browser_page(playwright)
        try:
            page.goto(f"{live.url}/assets/ui_scored?view=checks", wait_until="domcontentloaded")
            expect(page.get_by_text("no_failed_records").first).to_be_visible(timeout=60_000)
            page.get_by_text("no_failed_records").first.click()
            expect(page.get_by_text(f"{FAILING} of 40 record(s) failed in the last run").first).to_be_visible(
                timeout=30_000
            )
            page.screenshot(path=str(tmp_path / "partial_checks.png"), full_page=True)

            page.goto(f"{live.url}/assets/ui_scored", wait_until="domcontentloaded")
            expect(page.get_by_text("Latest check results").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(tmp_path / "partial_asset.png"))  # the check results: one warning
            samples = page.locator("tr").filter(has=page.get_by_text("samples", exact=True)).first
            samples.scroll_into_view_if_needed()
            samples.screenshot(path=str(tmp_path / "partial_samples.png"))

            page.goto(f"{live.url}/runs/{dry.run_id}", wait_until="domcontentloaded")
            page.get_by_role("button", name="View tags and config").click(timeout=60_000)
            expect(page.get_by_text("sync/dry_run").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(tmp_path / "dry_run.png"), full_page=False)
        finally:
            browser.close()
    for name in ("partial_checks.png", "partial_asset.png", "partial_samples.png", "dry_run.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_sync_statistics_fit_a_1600_px_window(live: LiveDagster, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    live.wait_finished(live.launch("sync_ui_people"))
    live.wait_finished(live.launch("sync_ui_scored"))  # partial
    refresh = live.wait_finished(live.launch("refresh_sync_statistics"))
    assert refresh.status == "SUCCESS"

    with sync_playwright() as playwright:
        browser, page = browser_page(playwright)
        try:
            page.goto(f"{live.url}/assets/sync_statistics", wait_until="domcontentloaded")
            header = page.get_by_role("columnheader", name="p95_s").first
            expect(header).to_be_visible(timeout=60_000)
            header.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "statistics.png"))
            # The table's last column ends inside its cell of the metadata table: nothing is cut off.
            row = page.locator("tr").filter(has=page.get_by_text("syncs", exact=True)).first
            last, value = header.bounding_box(), row.locator(":scope > td").last.bounding_box()
            assert last is not None and value is not None
            assert last["x"] + last["width"] <= value["x"] + value["width"], (last, value)
            summary = page.locator("tr").filter(has=page.get_by_text("ui_scored_summary", exact=True)).first
            expect(summary).to_contain_text(re.compile(r"\d run\(s\), 100% successful \(.*\d partial\)"))
            summary.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "statistics_summary.png"))
        finally:
            browser.close()


def test_a_partitioned_sync_run_without_a_partition_fills_the_days_it_read(live: LiveDagster, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    run = live.wait_finished(live.launch("sync_ui_days", {"ops": {"ui_days": {"config": {"user": "erin"}}}}))
    assert run.status == "SUCCESS"

    stats = live.graphql(PARTITION_STATS, key={"path": ["ui_days"]})["assetNodeOrError"]["partitionStats"]
    ended = (dt.date.today() - dt.date(2024, 1, 1)).days  # daily partitions ended by today (give or take a day)
    assert stats["numMaterialized"] == 4  # the four days of people (Jan 1 to Jan 4)
    assert abs(stats["numPartitions"] - ended) <= 1

    with sync_playwright() as playwright:
        browser, page = browser_page(playwright)
        try:
            page.goto(f"{live.url}/assets/ui_days?view=partitions", wait_until="domcontentloaded")
            expect(page.get_by_text("Materialized (4)").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(tmp_path / "partitions.png"), full_page=True)
        finally:
            browser.close()
    engine = sa.create_engine(f"sqlite:///{live.root / 'ui_days.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM people")).scalar_one() == 40
    engine.dispose()
