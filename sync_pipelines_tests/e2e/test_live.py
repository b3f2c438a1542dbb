"""Syncs operated through a live Dagster: webserver + daemon on a free port, driven through GraphQL.

One deployment serves the whole module (starting it is the slow part). Each test has its own
syncs and target databases; ``live_definitions`` lets a test slow down batches or make source
reads fail for one sync through a control file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from sync_pipelines_tests.factories import make_source, recorded
from sync_pipelines_tests.support.live import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    CONTROL_ENV,
    LIVE_PEOPLE,
    ROWS,
    LiveDagster,
    live_sync_config,
    people_rows,
    write_control,
)

SYNCS = {
    "live_people": {"batch_size": 10},
    "live_parts": {"batch_size": 3, "partitions": {"granularity": "daily", "start": "2024-01-01"}},
    "live_slow": {},
    "live_queue": {},
    "live_other": {"batch_size": 20},
    "live_flaky": {"batch_size": 20, "retry": {"max_retries": 3, "delay_s": 0.5, "max_delay_s": 2}},
    "live_watch": {"batch_size": 20, "realtime": {"enabled": True, "interval_seconds": 5}},
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDagster]:
    root = tmp_path_factory.mktemp("live")
    make_source(root / "source.db", people_rows(), LIVE_PEOPLE)
    make_source(
        root / "source_watch.db", people_rows(), LIVE_PEOPLE
    )  # the source-change test adds rows to its own source
    folder = root / "syncs"
    folder.mkdir()
    for name, overrides in SYNCS.items():
        data = live_sync_config(root, name, **overrides)
        if name == "live_watch":
            data["source"]["url"] = f"sqlite:///{root / 'source_watch.db'}"
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    control = root / "control.json"
    write_control(control)
    env = {
        "SYNC_PIPELINES_CONFIG_DIR": str(folder),
        "SYNC_PIPELINES_STAGING_DIR": str(root / "staging"),
        CONTROL_ENV: str(control),
    }
    dagster = LiveDagster(root, "sync_pipelines_tests.support.live_definitions", env)
    try:
        # The timing of these tests (one sync finishing while another runs) leaves no room for the runs
        # that the statistics and connection-check sensors add on two cores; test_ui_status runs them.
        dagster.start(stop_sensors=("sync_statistics_sensor", "endpoints_reachable_sensor"))
        yield dagster
    finally:
        dagster.stop()
    for name, process in dagster.processes.items():
        assert process.returncode is not None, f"{name} still running"


def target(live: LiveDagster, sync: str) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{live.root / f'{sync}.db'}")


def target_ids(live: LiveDagster, sync: str) -> list[int]:
    engine = target(live, sync)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("people"):
                return []
            return sorted(int(r[0]) for r in conn.execute(sa.text("SELECT id FROM people")))
    finally:
        engine.dispose()


def outcomes(live: LiveDagster, sync: str, **where: Any) -> list[dict[str, Any]]:
    """The record outcomes in ``sync``'s target database (see ``factories.recorded``)."""
    engine = target(live, sync)
    try:
        return recorded(engine.url.render_as_string(hide_password=False), **where)
    finally:
        engine.dispose()


def query(live: LiveDagster, sync: str, sql: str) -> list[tuple[Any, ...]]:
    engine = target(live, sync)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def control(live: LiveDagster, **values: Any) -> None:
    write_control(live.root / "control.json", **values)


def test_a_full_sync_launched_from_graphql_succeeds(live: LiveDagster) -> None:
    run_id = live.launch("sync_live_people", {"full_sync": True})
    run = live.wait_finished(run_id)

    assert run.status == "SUCCESS", live.events(run_id)
    assert run.tags["sync/name"] == "live_people"
    assert run.tags["sync/status"] == "completed"
    assert target_ids(live, "live_people") == list(range(1, ROWS + 1))
    [(watermark,)] = query(live, "live_people", "SELECT watermark FROM _sync_state")
    assert json.loads(watermark)["key"] == [ROWS]  # a full read sets the watermark to the greatest position


def test_a_three_partition_backfill_runs_one_window_per_partition(live: LiveDagster) -> None:
    partitions = ["2024-01-01", "2024-01-02", "2024-01-03"]
    backfill_id = live.backfill("live_parts", partitions)

    runs = live.wait(
        lambda: (
            (found := live.runs(**{"dagster/backfill": backfill_id}))
            and len(found) == 3
            and all(r.status in ("SUCCESS", "FAILURE", "CANCELED") for r in found)
            and found
        ),
        "the backfill's three runs",
    )

    assert all(r.status == "SUCCESS" for r in runs)
    # The multi-run policy gives each run a range of exactly one partition.
    assert all(
        r.tags["dagster/asset_partition_range_start"] == r.tags["dagster/asset_partition_range_end"] for r in runs
    )
    by_partition = {r.tags["dagster/asset_partition_range_start"]: r.run_id for r in runs}
    assert sorted(by_partition) == partitions
    # Each run created exactly the ten people of its day; day four was not read.
    for day, partition in enumerate(partitions):
        rows = outcomes(live, "live_parts", run_id=by_partition[partition], action="created")
        assert sorted(json.loads(r["record_key"])["id"] for r in rows) == list(range(day * 10 + 1, day * 10 + 11))
    assert target_ids(live, "live_parts") == list(range(1, 31))
    # Partition runs leave the incremental watermark alone (they do not write the sync's state row at all).
    assert query(live, "live_parts", "SELECT watermark FROM _sync_state") in ([], [(None,)])


def test_terminating_a_run_keeps_whole_batches_and_the_next_run_resumes(live: LiveDagster) -> None:
    control(live, delay={"live_slow": 1.0})
    run_id = live.launch("sync_live_slow")
    live.wait(lambda: len(target_ids(live, "live_slow")) >= 8, "two committed batches")

    live.terminate(run_id)
    run = live.wait_finished(run_id)

    assert run.status == "CANCELED"
    assert run.tags["sync/status"] == "cancelled"
    ids = target_ids(live, "live_slow")
    assert 8 <= len(ids) < ROWS and len(ids) % 4 == 0  # whole batches of four only
    assert ids == list(range(1, len(ids) + 1))
    [(watermark, last_batch)] = query(live, "live_slow", "SELECT watermark, last_batch FROM _sync_state")
    assert json.loads(watermark)["key"] == [ids[-1]]  # the watermark names the last committed row
    assert last_batch == len(ids) // 4 - 1
    events = live.events(run_id)
    assert any("stopping at the next batch boundary" in e["message"] for e in events)
    # The cancel reads as one: a sentence, no interrupt's stack trace, and the run ends CANCELED.
    [failure] = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
    assert failure["error"]["className"] == "Failure"
    assert "cancelled at a batch boundary" in failure["error"]["message"]
    assert not [e for e in events if "DagsterExecutionInterruptedError" in json.dumps(e)]

    control(live)
    resumed = live.wait_finished(live.launch("sync_live_slow"))
    assert resumed.status == "SUCCESS"
    assert target_ids(live, "live_slow") == list(range(1, ROWS + 1))
    # Every person was created once, by one of the two runs: nothing committed twice, nothing skipped.
    created = outcomes(live, "live_slow", action="created")
    assert sorted(json.loads(r["record_key"])["id"] for r in created) == list(range(1, ROWS + 1))
    assert {r["run_id"] for r in created} == {run_id, resumed.run_id}


def test_a_second_run_of_a_sync_waits_while_another_sync_runs(live: LiveDagster) -> None:
    # Ten batches of 2 s: room for the other sync's whole run (a new process, four steps) on a busy machine.
    control(live, delay={"live_queue": 2.0})
    first = live.launch("sync_live_queue")
    live.wait(lambda: live.run(first).status == "STARTED", "the first run to start")
    second = live.launch("sync_live_queue")
    other = live.launch("sync_live_other")

    other_run = live.wait_finished(other)
    assert other_run.status == "SUCCESS"
    first_run = live.run(first)
    assert first_run.status == "STARTED"  # the other sync ran to the end meanwhile
    assert live.run(second).status == "QUEUED"  # the same sync waits

    control(live)
    first_run = live.wait_finished(first)
    second_run = live.wait_finished(second)
    assert first_run.status == "SUCCESS" and second_run.status == "SUCCESS"
    assert first_run.end_time is not None and second_run.start_time is not None
    assert second_run.start_time >= first_run.end_time
    assert other_run.end_time is not None and other_run.end_time <= first_run.end_time
    assert target_ids(live, "live_queue") == list(range(1, ROWS + 1))


def test_a_transient_source_failure_is_retried_to_success(live: LiveDagster) -> None:
    control(live, fail={"live_flaky": 2})
    run_id = live.launch("sync_live_flaky")
    run = live.wait_finished(run_id)

    assert run.status == "SUCCESS"
    events = live.events(run_id)
    retries = [e for e in events if e["__typename"] == "ExecutionStepUpForRetryEvent"]
    assert len(retries) == 2 and {e["stepKey"] for e in retries} == {"live_flaky.live_flaky_extract"}
    warnings = [e["message"] for e in events if "transient, retry" in (e["message"] or "")]
    assert len(warnings) == 2 and "connection refused" in warnings[0]
    assert target_ids(live, "live_flaky") == list(range(1, ROWS + 1))


def test_the_source_sensor_starts_a_run_when_the_source_moves(live: LiveDagster) -> None:
    """The sensor is on by default (``realtime.enabled``); the daemon ticks it every 5 seconds."""

    def finished_runs() -> list[Any]:
        runs = live.runs(**{"sync/name": "live_watch"})
        return runs if runs and all(r.status in ("SUCCESS", "FAILURE", "CANCELED") for r in runs) else []

    [first] = live.wait(finished_runs, "the sensor's first run")
    assert first.status == "SUCCESS"
    assert json.loads(first.tags["sync/high_water_mark"]) == {"$datetime": "2024-01-04T09:00:00"}
    assert target_ids(live, "live_watch") == list(range(1, ROWS + 1))

    engine = sa.create_engine(f"sqlite:///{live.root / 'source_watch.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO people VALUES (41, 'late', '2024-01-05 08:00:00.000000')"))
    engine.dispose()
    runs = live.wait(lambda: len(found := finished_runs()) == 2 and found, "a run for the new row")

    second = next(r for r in runs if r.run_id != first.run_id)
    assert second.status == "SUCCESS"
    assert json.loads(second.tags["sync/high_water_mark"]) == {"$datetime": "2024-01-05T08:00:00"}
    assert target_ids(live, "live_watch") == list(range(1, ROWS + 2))
    created = outcomes(live, "live_watch", run_id=second.run_id)
    assert [json.loads(r["record_key"])["id"] for r in created] == [41]  # incremental: only the new row


@pytest.mark.browser
def test_the_asset_page_shows_the_sync_in_a_browser(live: LiveDagster, tmp_path: Path) -> None:
    """Debian's Chromium, driven by Playwright (no browser download), on the asset page of a synced asset."""
    from playwright.sync_api import Page, expect, sync_playwright

    run = live.wait_finished(live.launch("sync_live_people", {"full_sync": True}))
    assert run.status == "SUCCESS"
    screenshot = tmp_path / "live_people_asset.png"
    # The first visit to a local UI opens a "Join the Dagster community" dialog over the page.
    assert live.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True

    def metadata_value(page: Page, key: str) -> Any:
        row = page.locator("tr").filter(has=page.get_by_text(key, exact=True))
        return expect(row.first)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.goto(f"{live.url}/assets/live_people", wait_until="domcontentloaded")
            expect(page.get_by_text("People into live_people, incrementally on updated_at.").first).to_be_visible(
                timeout=60_000
            )
            # The last materialization's metadata: a full sync reading all 40 people, none failing.
            metadata_value(page, "status").to_contain_text("completed", timeout=30_000)
            metadata_value(page, "processed").to_contain_text("40")
            metadata_value(page, "succeeded").to_contain_text("40")
            metadata_value(page, "failed").to_contain_text("0")
            page.screenshot(path=str(screenshot), full_page=True)
            # The asset's checks: the conflict check ran after the load step and passed.
            page.get_by_role("tab", name="Checks").click()
            expect(page.get_by_text("no_open_conflicts").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Succeeded").first).to_be_visible()
            page.screenshot(path=str(tmp_path / "live_people_checks.png"), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
