"""The sync centre's forms in Debian's Chromium (Playwright), served by ``sync-pipelines ui`` beside a real Dagster.

A backfill of two partitions started from a partitioned sync's page; a host-metrics run launched from a
typed list plus an uploaded file (after the form named a malformed line); a host file dropped into the
watched folder, whose run's page names the file and its skipped line; the connection test's table.
Every launched run is checked in Dagster (status, ``sync/user`` tag) and on the view's pages.

Screenshots go to ``$SYNC_SCREENSHOTS_DIR`` when set, else to the test's temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync_pipelines_tests.e2e.test_web_browser import (
    RUN_TIMEOUT_S,
    Ui,
    host_metrics_config,
    running_ui,
)
from sync_pipelines_tests.support.browser import chromium, screenshot_dir
from sync_pipelines_tests.support.live import (
    RUN,
    RUNS,
)
from sync_pipelines_tests.support.web_history import SYNC, build_history

DAILY = "orders_daily"
HOSTS = "host_metrics"
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
LOADED = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename } } } } }"
VIEWPORT = {"width": 1600, "height": 1000}


def shots(tmp_path: Path) -> Path:
    return screenshot_dir(tmp_path)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """``sync-pipelines ui`` over ``orders_sync``, a daily partitioned copy and the demo's ``host_metrics``
    (its CMDB and Elasticsearch server from ``--demo-dir``) watching a drop folder every 5 s."""
    root = tmp_path_factory.mktemp("web_forms_ui")
    history = build_history(root)
    hosts = host_metrics_config(root / "demo")
    hosts["source"]["host_files"] = {"folder": str(root / "drops"), "pattern": "*.txt", "interval_s": 5}  # type: ignore[index]
    (root / "drops").mkdir()
    (history.config_dir / f"{HOSTS}.yaml").write_text(yaml.safe_dump(hosts, allow_unicode=True), encoding="utf-8")
    daily = yaml.safe_load((history.config_dir / f"{SYNC}.yaml").read_text(encoding="utf-8"))
    daily.update(name=DAILY, partitions={"granularity": "daily", "start": "2026-11-01", "max_parallel": 1})
    daily["target"]["url"] = f"sqlite:///{root / 'daily.db'}"
    (history.config_dir / f"{DAILY}.yaml").write_text(yaml.safe_dump(daily, allow_unicode=True), encoding="utf-8")
    with running_ui(root, history) as started:
        yield started


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _runs(ui: Ui, **tags: str) -> list[dict[str, Any]]:
    answer = ui.graphql(RUNS, filter={"tags": [{"key": k, "value": v} for k, v in tags.items()]})
    return list(answer["runsOrError"]["results"])  # type: ignore[index]


def _run(ui: Ui, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = ui.graphql(RUN, runId=run_id)["runOrError"]  # type: ignore[assignment]
    return run


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def _wait_finished(ui: Ui, run_id: str) -> dict[str, Any]:
    ui.wait(lambda: _run(ui, run_id)["status"] in FINISHED, f"run {run_id}", RUN_TIMEOUT_S)
    return _run(ui, run_id)


def test_a_backfill_of_two_partitions_starts_from_the_sync_page(ui: Ui, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{ui.view}/syncs/{DAILY}")
    form = page.locator("form.backfill")
    form.get_by_label("First partition").fill("2026-11-04")
    form.get_by_label("Last partition").fill("2026-11-03")
    form.get_by_label("Started by").fill("dora")
    form.get_by_role("button", name="Start backfill").click()
    expect(page.locator("#backfill-error")).to_have_text(
        "the last partition 2026-11-03 comes before the first 2026-11-04"
    )

    form = page.locator("form.backfill")
    expect(form.get_by_label("Started by")).to_have_value("dora")
    form.get_by_label("First partition").fill("2026-11-03")
    form.get_by_label("Last partition").fill("2026-11-04")
    page.screenshot(path=str(shots(tmp_path) / "backfill_form.png"), full_page=True)
    form.get_by_role("button", name="Start backfill").click()

    expect(page.locator("#backfill-launched")).to_contain_text("dora started this backfill of orders_daily")
    backfill_id = page.url.split("/backfills/", 1)[1].split("?", 1)[0]
    ui.wait(lambda: len(_runs(ui, **{"dagster/backfill": backfill_id})) == 2, "the backfill's two runs", RUN_TIMEOUT_S)
    runs = [_wait_finished(ui, r["runId"]) for r in _runs(ui, **{"dagster/backfill": backfill_id})]
    # One run per partition (multi_run): Dagster tags an asset backfill's run with its one-partition range.
    ranges = sorted(
        (_tags(r)["dagster/asset_partition_range_start"], _tags(r)["dagster/asset_partition_range_end"]) for r in runs
    )
    assert ranges == [("2026-11-03", "2026-11-03"), ("2026-11-04", "2026-11-04")]
    assert [(r["status"], _tags(r)["sync/user"]) for r in runs] == [("SUCCESS", "dora")] * 2

    page.goto(f"{ui.view}/backfills/{backfill_id}")
    partitions = page.locator("table.partitions tbody tr")
    expect(partitions).to_have_count(2)
    expect(partitions.nth(0)).to_contain_text("2026-11-03")
    expect(partitions.nth(1)).to_contain_text("2026-11-04")
    expect(page.locator("table.partitions .status-completed")).to_have_count(2)
    page.screenshot(path=str(shots(tmp_path) / "backfill_page.png"), full_page=True)
    page.goto(f"{ui.view}/runs?user=dora&trigger=backfill")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)


def test_a_host_list_typed_and_uploaded_launches_one_run(ui: Ui, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{ui.view}/syncs/{HOSTS}")
    page.locator("#hosts-link").click()
    page.get_by_label("Host IPs", exact=True).fill("10.1.1.1\nnot-an-ip\n")
    page.get_by_label("Run by").fill("erin")
    page.get_by_role("button", name="Run for these hosts").click()
    expect(page.locator("#hosts-problems li")).to_have_text(["typed list, line 2: 'not-an-ip' is not an IP address"])
    page.screenshot(path=str(shots(tmp_path) / "host_list_refused.png"), full_page=True)

    upload = tmp_path / "more_hosts.txt"
    upload.write_text("# from the ticket\n10.1.1.3\n10.1.1.1\n", encoding="utf-8")
    page.get_by_label("Host IPs", exact=True).fill("10.1.1.1\n10.1.1.2  # db\n")
    page.get_by_label("or a file of host IPs").set_input_files(str(upload))
    page.get_by_label("Time range").fill("30d")
    page.screenshot(path=str(shots(tmp_path) / "host_list_form.png"), full_page=True)
    page.get_by_role("button", name="Run for these hosts").click()

    notice = page.locator("#hosts-launched")
    expect(notice).to_contain_text("for 3 host(s)")
    run_id = (notice.locator("a").first.get_attribute("href") or "").rsplit("/", 1)[-1]
    run = _wait_finished(ui, run_id)
    assert run["status"] == "SUCCESS" and _tags(run)["sync/user"] == "erin"

    page.goto(f"{ui.view}/runs/{run_id}")
    expect(page.locator("#hosts-created")).to_have_text("10.1.1.1, 10.1.1.2, 10.1.1.3")  # first metrics of each
    expect(page.locator("#hosts-updated")).to_have_text("-")
    expect(page.locator("table.hosts tbody tr")).to_have_count(3)
    expect(page.locator("#host-file")).to_have_count(0)  # not started from a dropped file
    page.screenshot(path=str(shots(tmp_path) / "host_list_run.png"), full_page=True)

    # The same hosts again: nothing changed, and the run lists them as unchanged (not as updated).
    page.goto(f"{ui.view}/syncs/{HOSTS}/hosts")
    page.get_by_label("Host IPs", exact=True).fill("10.1.1.1\n10.1.1.2\n")
    page.get_by_label("Run by").fill("erin")
    page.get_by_role("button", name="Run for these hosts").click()
    again = (page.locator("#hosts-launched a").first.get_attribute("href") or "").rsplit("/", 1)[-1]
    assert _wait_finished(ui, again)["status"] == "SUCCESS"
    page.goto(f"{ui.view}/runs/{again}")
    expect(page.locator("#hosts-unchanged")).to_have_text("10.1.1.1, 10.1.1.2")
    expect(page.locator("#hosts-updated")).to_have_text("-")


def test_a_dropped_host_file_names_itself_and_its_skipped_lines_on_the_run_page(
    ui: Ui, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    drops = ui.history.config_dir.parent / "drops"
    (drops / "night_list.txt").write_text("10.1.1.4\nnot-an-ip\n10.1.1.5\n", encoding="utf-8")
    found: list[dict[str, Any]] = []

    def started() -> bool:
        found[:] = [r for r in _runs(ui, **{"sync/name": HOSTS}) if "sync/host_file" in _tags(r)]
        return bool(found)

    ui.wait(started, "the run of the dropped host file", RUN_TIMEOUT_S)
    run = _wait_finished(ui, found[0]["runId"])
    assert run["status"] == "SUCCESS"

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{ui.view}/runs/{run['runId']}")
    expect(page.locator("#host-file")).to_contain_text("Started from the dropped host list night_list.txt")
    expect(page.locator("#skipped-lines li")).to_have_text(["line 2: 'not-an-ip' is not an IP address"])
    expect(page.locator("#hosts-created")).to_have_text("10.1.1.4, 10.1.1.5")
    page.screenshot(path=str(shots(tmp_path) / "host_file_run.png"), full_page=True)


def test_the_connection_test_and_the_statistics_from_the_sync_page(ui: Ui, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{ui.view}/syncs/{HOSTS}")
    page.locator("#check-link").click()
    page.get_by_role("button", name="Run the connection test").click()
    expect(page.locator("#check-verdict")).to_contain_text("Every endpoint is ready.", timeout=RUN_TIMEOUT_S * 1000)
    expect(page.locator("table.check tbody tr")).to_have_count(2)
    expect(page.locator("table.check .status-completed")).to_have_count(2)
    expect(page.locator("table.check tr.endpoint-source")).to_contain_text(
        "maps the host, group, time and metric fields"
    )
    page.screenshot(path=str(shots(tmp_path) / "connection_test.png"), full_page=True)

    page.goto(f"{ui.view}/syncs/{SYNC}")
    page.locator("#statistics-link").click()
    page.get_by_label("Last days").fill("3660")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#stat-runs .n")).to_have_text("4")
    expect(page.locator("#stat-success .n")).to_have_text("75.0 %")
    expect(page.locator("table.partition-stats tbody tr")).to_have_count(2)
    page.screenshot(path=str(shots(tmp_path) / "statistics.png"), full_page=True)
