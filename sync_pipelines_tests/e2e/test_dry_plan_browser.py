"""A dry run's plan in Chromium, launched from the history view on a live Dagster (webserver and daemon).

A ``directory_users``-style sync (a full sync that deletes what the source no longer has) runs once for real;
then the source and the target change (an update, a delete, a record changed on both sides, an edit on the
target only, a new record and one with a bad value). The sync page's *Dry run* launches the sync's dry-run
job: the run carries ``sync/dry_run`` from its launch (while it waits in the queue), and its page lists the
plan, record by record, with the same filters, field changes and downloads as a real run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa
import uvicorn

from sync_pipelines.web import create_app
from sync_pipelines_tests.factories import (
    edit_target,
    full_orders_config,
    make_source,
    order,
    update_source,
    write_config,
)
from sync_pipelines_tests.support.browser import chromium, screenshot_dir
from sync_pipelines_tests.support.databases import Databases
from sync_pipelines_tests.support.live import LiveDagster, free_port

SYNC = "orders_sync"
RUN_TAGS = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { jobName status tags { key value } } } }"


@dataclass
class Centre:
    dagster: LiveDagster
    view: str
    dbs: Databases
    source: sa.Table


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Centre]:
    root = tmp_path_factory.mktemp("dry_plan")
    dbs = Databases("sqlite", f"sqlite:///{root / 'source.db'}", f"sqlite:///{root / 'target.db'}")
    source = make_source(dbs, [order(i) for i in range(1, 11)])
    folder = root / "syncs"
    write_config(folder, full_orders_config(dbs, delete_missing=True, max_delete_ratio=0.5))
    env = {"SYNC_PIPELINES_CONFIG_DIR": str(folder), "SYNC_PIPELINES_STAGING_DIR": str(root / "staging")}
    dagster = LiveDagster(root, "sync_pipelines.definitions", env, location="sync_pipelines")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(folder, dagster.url), host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    try:
        dagster.start(stop_sensors=("sync_statistics_sensor", "endpoints_reachable_sensor"))
        thread.start()
        while not server.started:
            time.sleep(0.1)
        yield Centre(dagster, f"http://127.0.0.1:{port}", dbs, source)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        dagster.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def shots(tmp_path: Path) -> Path:
    return screenshot_dir(tmp_path)


@pytest.mark.slow
def test_a_dry_run_launched_from_the_view_lists_its_plan(centre: Centre, browser: object, tmp_path: Path) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    dagster, dbs = centre.dagster, centre.dbs
    real = dagster.launch(f"sync_{SYNC}")
    assert dagster.wait_finished(real).status == "SUCCESS", dagster.failures(real)
    update_source(dbs, centre.source, [3], status="paid")
    edit_target(dbs, 2, qty=99)
    update_source(dbs, centre.source, [2], qty="4")  # changed on both sides: a conflict
    edit_target(dbs, 6, status="held")  # edited on the target only
    engine = dbs.source()
    with engine.begin() as conn:
        conn.execute(centre.source.delete().where(centre.source.c.id == 4))
        conn.execute(centre.source.insert(), [order(11), order(12, qty="n/a")])
    engine.dispose()

    page = browser.new_page(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    page.goto(f"{centre.view}/syncs/{SYNC}")
    page.check("input[name=dry_run]")
    page.fill("input[name=user]", "dora")
    page.click("form.launch button[type=submit]")
    expect(page.locator("p.notice")).to_contain_text("Launched run")
    run_id = parse_qs(urlparse(page.url).query)["launched"][0]
    # Tagged from its launch: the tags are read at once, whether the run still waits in the queue or not.
    launched = dagster.graphql(RUN_TAGS, id=run_id)["runOrError"]
    tags = {t["key"]: t["value"] for t in launched["tags"]}
    assert launched["jobName"] == f"dry_run_{SYNC}" and tags["sync/dry_run"] == "true", launched
    assert tags["sync/user"] == "dora"
    assert dagster.wait_finished(run_id).status == "SUCCESS", dagster.failures(run_id)

    page.goto(f"{centre.view}/runs/{run_id}")
    expect(page.locator("#dry-plan")).to_contain_text("Dry run: nothing was written")
    counts = {
        label: page.locator(f".count-{label} .n").inner_text()
        for label in ("updated", "deleted", "conflicted", "target_modified", "created", "failed")
    }
    assert counts == {
        "updated": "1",
        "deleted": "1",
        "conflicted": "1",
        "target_modified": "1",
        "created": "1",
        "failed": "1",
    }
    entity = page.locator("table.entities tbody tr").first.locator("td").all_inner_texts()
    # Success / total, updated, created, deleted, failed, not written: as the counts say.
    assert entity[1:] == ["9 / 12", "1", "1", "1", "1", "2"]  # 6 unchanged, 1 updated, created and deleted
    records = page.locator("table.records tr.record")
    expect(records).to_have_count(6)
    expect(page.locator("table.records .badge.planned")).to_have_count(6)
    page.locator("table.records tr.record", has_text="order_id=3").locator("summary").click()
    expect(page.locator("table.records tr.record", has_text="order_id=3").locator("table.diff")).to_contain_text("paid")
    page.screenshot(path=str(shots(tmp_path) / "dry_run_plan.png"), full_page=True)

    page.select_option("select[name=status]", "failed")
    page.click("form.filters button[type=submit]")
    expect(records).to_have_count(1)
    expect(records.first).to_contain_text("order_id=12")
    expect(records.first.locator(".error-cell")).to_contain_text("qty")
    page.screenshot(path=str(shots(tmp_path) / "dry_run_plan_failed.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#download-csv")
    assert download.value.suggested_filename == f"{SYNC}-{run_id[:8]}-dry-run-plan.csv"
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert "order_id=12" in text and "order_id=3" not in text

    # The target was not touched.
    engine = dbs.target()
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(sa.text("SELECT order_id FROM wh_orders"))}
        status = conn.execute(sa.text("SELECT status FROM wh_orders WHERE order_id = 3")).scalar_one()
    engine.dispose()
    assert ids == set(range(1, 11)) and status == "open"
    page.close()
