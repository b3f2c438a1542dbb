"""The history view in Debian's Chromium (Playwright), served by ``sync-pipelines ui`` beside a real Dagster.

``sync-pipelines ui`` starts ``dagster dev`` and the view; the test walks every page, narrows the
records with a filter, expands a record's field changes, downloads the filtered records as Excel,
resolves a conflict with the page's button (a ``resolve_conflicts`` run in Dagster), and finally
stops the command with SIGTERM and checks that every process it started has ended.

The sync centre's runs in every state are driven against a live Dagster with the project's instance
settings (one run per sync at a time, so a second run waits in the queue) and ``live_definitions``,
whose control file holds a sync's batches back: a queued run's page, a running run's live progress,
cancel and retry from the run's page, and a schedule turned on and off.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
import requests
import sqlalchemy as sa
import yaml

from sync_pipelines.web import create_app
from sync_pipelines_tests.factories import make_source
from sync_pipelines_tests.support.browser import chromium, screenshot_dir
from sync_pipelines_tests.support.live import (
    BIN,
    CONTROL_ENV,
    LIVE_PEOPLE,
    REPO,
    LiveDagster,
    default_signals,
    free_port,
    live_sync_config,
    people_rows,
    write_control,
)
from sync_pipelines_tests.support.web_history import SYNC, History, build_history

DAILY = "orders_daily"
"""A partitioned copy of ``orders_sync``: Dagster's launchpad would ask to confirm a run without a partition."""
START_TIMEOUT_S = 240
RUN_TIMEOUT_S = 180
LOADED = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename } } } } }"
RUN_STATUS = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
RUN_TAGS = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }"
LAUNCH = """
mutation Launch($job: String!) {
  launchRun(executionParams: {
    selector: {repositoryLocationName: "sync_pipelines", repositoryName: "__repository__", jobName: $job},
    runConfigData: {}
  }) { __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } }
}
"""


def host_metrics_config(demo: Path) -> dict[str, object]:
    """The demo's ``host_metrics`` sync, with its CMDB in ``demo`` and without the file-drop sensor."""
    data = yaml.safe_load((REPO / "syncs" / "host_metrics.yaml").read_text(encoding="utf-8"))
    data["target"]["url"] = f"sqlite:///{demo / 'cmdb.db'}"
    del data["source"]["host_files"]
    return dict(data)


@dataclass
class Ui:
    """A running ``sync-pipelines ui`` and what it serves."""

    process: subprocess.Popen[bytes]
    view: str
    dagster: str
    history: History
    log: Path

    def graphql(self, query: str, **variables: object) -> dict[str, object]:
        answer = requests.post(f"{self.dagster}/graphql", json={"query": query, "variables": variables}, timeout=60)
        return dict(answer.json()["data"])

    def wait(self, ready: object, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, f"sync-pipelines ui exited:\n{self.log.read_text(errors='replace')}"
            with contextlib.suppress(requests.RequestException, KeyError, TypeError):
                if callable(ready) and ready():
                    return
            assert time.monotonic() < deadline, (
                f"{what} not within {timeout_s} s:\n{self.log.read_text(errors='replace')}"
            )
            time.sleep(0.5)


def _location_loaded(ui: Ui) -> bool:
    entries = ui.graphql(LOADED)["workspaceOrError"]["locationEntries"]  # type: ignore[index]
    return any((e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation" for e in entries)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    root = tmp_path_factory.mktemp("web_ui")
    history = build_history(root)
    hosts = yaml.safe_dump(host_metrics_config(root / "demo"), allow_unicode=True)
    (history.config_dir / "host_metrics.yaml").write_text(hosts, encoding="utf-8")
    daily = yaml.safe_load((history.config_dir / f"{SYNC}.yaml").read_text(encoding="utf-8"))
    daily.update(name=DAILY, partitions={"granularity": "daily", "start": "2026-11-01"})
    daily["target"]["url"] = f"sqlite:///{root / 'daily.db'}"
    (history.config_dir / f"{DAILY}.yaml").write_text(yaml.safe_dump(daily, allow_unicode=True), encoding="utf-8")
    with running_ui(root, history) as started:
        yield started


@contextlib.contextmanager
def running_ui(root: Path, history: History) -> Iterator[Ui]:
    """``sync-pipelines ui`` over ``history``'s configuration folder (and the demo under ``root / "demo"``), on
    free ports, once the view answers and Dagster has loaded the code location; stopped with SIGTERM after."""
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    view_port, dagster_port = free_port(), free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SYNC_PIPELINES_STAGING_DIR": str(root / "staging")}
    env.pop("SYNC_DEMO_ES_URL", None)
    command = [str(BIN / "sync-pipelines"), "--config-dir", str(history.config_dir), "ui"]
    command += ["--port", str(view_port), "--dagster-port", str(dagster_port), "--demo-dir", str(root / "demo")]
    log = root / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=default_signals,
        )  # fmt: skip
    started = Ui(process, f"http://127.0.0.1:{view_port}", f"http://127.0.0.1:{dagster_port}", history, log)
    try:
        started.wait(lambda: requests.get(started.view, timeout=5).ok, "the history view", START_TIMEOUT_S)
        started.wait(lambda: _location_loaded(started), "Dagster's code location", START_TIMEOUT_S)
        yield started
    finally:
        if process.poll() is None:  # a test did not stop it: stop it the same way
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)


@pytest.fixture
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def test_every_page_loads_and_a_run_filters_expands_and_downloads(ui: Ui, browser: object, tmp_path: Path) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    history = ui.history
    headings = {
        "/": "Syncs",
        "/runs": "Runs",
        f"/syncs/{SYNC}": SYNC,
        f"/runs/{history.second}": f"Run {history.second[:8]} of {SYNC}",
        f"/syncs/{SYNC}/conflicts": f"Conflicts of {SYNC}",
        "/backfills": "Backfills",
        f"/backfills/{history.backfill_id}": f"Backfill {history.backfill_id}",
    }
    for i, (path, heading) in enumerate(headings.items()):
        response = page.goto(ui.view + path)
        assert response is not None and response.status == 200, path
        expect(page.locator("h1")).to_contain_text(heading)
        page.screenshot(path=str(tmp_path / f"page{i}.png"), full_page=True)

    page.goto(f"{ui.view}/runs/{history.second}")
    expect(page.locator("td.key")).to_have_count(3)
    page.select_option("select[name=action]", "updated")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("td.key")).to_have_text(["order_id=5"])
    expect(page.locator(".pager")).to_contain_text("1 record")

    change = page.locator("table.diff tr").filter(has_text="status")
    expect(change).to_be_hidden()
    page.locator("details summary").first.click()
    expect(change).to_be_visible()
    expect(change.locator("td.before")).to_have_text("open")
    expect(change.locator("td.after")).to_have_text("paid")
    page.screenshot(path=str(tmp_path / "run_filtered_expanded.png"), full_page=True)

    with page.expect_download() as download:
        page.locator("#download-xlsx").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    book = openpyxl.load_workbook(saved, read_only=True)
    rows = list(book["Records"].iter_rows(values_only=True))
    assert saved.name == f"{SYNC}-{history.second[:8]}.xlsx"
    assert [(r[0], r[2]) for r in rows[1:]] == [("order_id=5", "updated")]
    assert 'status: "open" -> "paid"' in str(rows[1][4])


def test_keep_source_resolves_the_conflict_through_a_dagster_run(ui: Ui, browser: object, tmp_path: Path) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{ui.view}/syncs/{SYNC}/conflicts")
    page.locator("input[name=resolved_by]").fill("bob")
    page.get_by_role("button", name="Keep source").click()
    notice = page.get_by_role("status")
    expect(notice).to_contain_text("Launched run")
    expect(page.locator("input[name=resolved_by]")).to_have_value("bob")  # kept for the next conflict
    run_id = (page.locator("[role=status] a").get_attribute("href") or "").rsplit("/", 1)[-1]
    page.screenshot(path=str(tmp_path / "conflict_launched.png"), full_page=True)

    def finished() -> bool:
        run = ui.graphql(RUN_STATUS, id=run_id)["runOrError"]
        return run["status"] in ("SUCCESS", "FAILURE", "CANCELED")  # type: ignore[index]

    ui.wait(finished, f"run {run_id} of resolve_conflicts", RUN_TIMEOUT_S)
    assert ui.graphql(RUN_STATUS, id=run_id)["runOrError"] == {"status": "SUCCESS"}
    page.goto(f"{ui.view}/syncs/{SYNC}/conflicts")
    expect(page.get_by_text("No open conflicts.")).to_be_visible()
    page.goto(f"{ui.view}/syncs/{SYNC}/conflicts?all=1")
    expect(page.locator("section.conflict")).to_contain_text("resolved by bob (keep_source)")
    engine = sa.create_engine(ui.history.target_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM wh_orders WHERE order_id = 6")).scalar_one() == "paid"
    engine.dispose()


def test_run_now_launches_a_partitioned_sync_without_a_partition(ui: Ui, browser: object, tmp_path: Path) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{ui.view}/syncs/{DAILY}")
    expect(page.locator("form.launch")).to_contain_text(f"sync_{DAILY} without a partition")
    page.get_by_label("Full sync").check()
    page.locator("form.launch input[name=user]").fill("carol")
    page.get_by_role("button", name="Run now").click()
    notice = page.get_by_role("status")
    expect(notice).to_contain_text("Launched run")
    run_id = (page.locator("[role=status] a").get_attribute("href") or "").rsplit("/", 1)[-1]
    page.screenshot(path=str(tmp_path / "run_now_launched.png"), full_page=True)

    def finished() -> bool:
        run = ui.graphql(RUN_STATUS, id=run_id)["runOrError"]
        return run["status"] in ("SUCCESS", "FAILURE", "CANCELED")  # type: ignore[index]

    ui.wait(finished, f"run {run_id} of sync_{DAILY}", RUN_TIMEOUT_S)
    assert ui.graphql(RUN_STATUS, id=run_id)["runOrError"] == {"status": "SUCCESS"}
    tags = {t["key"]: t["value"] for t in ui.graphql(RUN_TAGS, id=run_id)["runOrError"]["tags"]}  # type: ignore[index]
    assert tags["sync/user"] == "carol" and tags["sync/triggered_by"] == "manual"
    assert tags["sync/status"] == "partial"  # order 3 cannot be cast
    assert "dagster/partition" not in tags and "sync/dry_run" not in tags
    page.goto(f"{ui.view}/syncs/{DAILY}")
    expect(page.locator("table.runs tbody tr").first).to_contain_text("carol")
    page.screenshot(path=str(tmp_path / "run_now_history.png"), full_page=True)
    engine = sa.create_engine(f"sqlite:///{ui.history.config_dir.parent / 'daily.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM wh_orders")).scalar_one() == 29  # 30 orders, one failed
    engine.dispose()


def test_host_metrics_launched_in_dagster_reach_the_demo_elasticsearch_server(ui: Ui) -> None:
    launched = ui.graphql(LAUNCH, job="sync_host_metrics")["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched  # type: ignore[index]
    run_id = launched["run"]["runId"]  # type: ignore[index]

    def finished() -> bool:
        run = ui.graphql(RUN_STATUS, id=run_id)["runOrError"]
        return run["status"] in ("SUCCESS", "FAILURE", "CANCELED")  # type: ignore[index]

    ui.wait(finished, f"run {run_id} of sync_host_metrics", RUN_TIMEOUT_S)
    assert ui.graphql(RUN_STATUS, id=run_id)["runOrError"] == {"status": "SUCCESS"}
    engine = sa.create_engine(f"sqlite:///{ui.history.config_dir.parent / 'demo' / 'cmdb.db'}")
    with engine.connect() as conn:
        written = conn.execute(sa.text("SELECT count(*) FROM server_resources")).scalar_one()
    engine.dispose()
    assert written == 25  # the 25 pool hosts that send metrics; the 2 retired ones have no data


def _listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children...), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_dagster_stops_when_the_command_is_killed(tmp_path: Path) -> None:
    """Even SIGKILL of ``sync-pipelines ui`` (no clean-up possible) does not leave Dagster running."""
    folder = tmp_path / "syncs"
    folder.mkdir()
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    command = [str(BIN / "sync-pipelines"), "--config-dir", str(folder), "ui", "--port", str(free_port())]
    command += ["--dagster-port", str(free_port())]
    with (tmp_path / "ui.log").open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=default_signals
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (dagster := [p for p in descendants(process.pid) if "dagster" in _command_line(p)]):
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "ui.log").read_text()
        time.sleep(0.2)
    process.kill()
    process.wait(timeout=60)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while any(_alive(pid) for pid in dagster):
            assert time.monotonic() < deadline, f"dagster dev {dagster} outlived the killed command"
            time.sleep(0.2)
    except AssertionError:
        for pid in dagster:  # clean up after the failure: dagster dev leads its own process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        raise


def test_the_demo_elasticsearch_server_stops_when_the_command_is_killed(tmp_path: Path) -> None:
    """SIGKILL of ``sync-pipelines ui`` also stops the demo's Elasticsearch-API server it started: its port is freed."""
    folder = tmp_path / "syncs"
    folder.mkdir()
    hosts = yaml.safe_dump(host_metrics_config(tmp_path / "demo"), allow_unicode=True)
    (folder / "host_metrics.yaml").write_text(hosts, encoding="utf-8")
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("SYNC_DEMO_ES_URL", None)
    command = [str(BIN / "sync-pipelines"), "--config-dir", str(folder), "ui", "--port", str(free_port())]
    command += ["--dagster-port", str(free_port()), "--demo-dir", str(tmp_path / "demo")]
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=default_signals
        )
    started: set[int] = set()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (servers := [p for p in descendants(process.pid) if "noida-db" in _command_line(p)]):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        [server] = servers
        arguments = _command_line(server).split()
        es_url = f"http://127.0.0.1:{arguments[arguments.index('--elasticsearch-port') + 1]}"
        while not _listening(es_url):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        started = descendants(process.pid)
        process.kill()
        process.wait(timeout=60)
        deadline = time.monotonic() + START_TIMEOUT_S
        while _listening(es_url) or _alive(server):
            assert time.monotonic() < deadline, f"the Elasticsearch-API server {es_url} outlived the killed command"
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)
        for pid in started | descendants(process.pid):  # clean up after a failure
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def test_sigterm_stops_dagster_and_the_view_together(ui: Ui) -> None:
    assert _listening(ui.view) and _listening(ui.dagster)
    started = descendants(ui.process.pid)
    assert len(started) >= 3  # dagster dev, its webserver and its daemon at least
    ui.process.send_signal(signal.SIGTERM)
    ui.process.wait(timeout=120)
    assert [pid for pid in started if _alive(pid)] == []
    assert not _listening(ui.view) and not _listening(ui.dagster)


# --- the sync centre: runs in every state, against a live Dagster whose batches the test holds back

CENTRE = "centre_people"
"""40 people in batches of four; its schedule (1 January) is off by default."""
WAIT_MS = 120_000


@dataclass
class Centre:
    """A live Dagster, the history view serving its syncs, and the control file of ``live_definitions``."""

    dagster: LiveDagster
    view: str
    control: Path

    def shots(self, tmp_path: Path) -> Path:
        folder = screenshot_dir(tmp_path)
        folder.mkdir(parents=True, exist_ok=True)
        return folder


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Centre]:
    import uvicorn

    root = tmp_path_factory.mktemp("centre")
    make_source(root / "source.db", people_rows(), LIVE_PEOPLE)
    folder = root / "syncs"
    folder.mkdir()
    data = live_sync_config(root, CENTRE, schedule={"cron": "0 0 1 1 *", "enabled": False}, timezone="UTC")
    (folder / f"{CENTRE}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    control = root / "control.json"
    write_control(control)
    env = {
        "SYNC_PIPELINES_CONFIG_DIR": str(folder),
        "SYNC_PIPELINES_STAGING_DIR": str(root / "staging"),
        CONTROL_ENV: str(control),
    }
    dagster = LiveDagster(root, "sync_pipelines_tests.support.live_definitions", env, location="sync_pipelines")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(folder, dagster.url), host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    try:
        dagster.start(stop_sensors=("sync_statistics_sensor", "endpoints_reachable_sensor"))
        thread.start()
        view = f"http://127.0.0.1:{port}"
        dagster.wait(lambda: _listening(view), "the history view")
        yield Centre(dagster, view, control)
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(timeout=30)
        dagster.stop()


def _launched(page: object) -> str:
    """The id of the run that the page's notice says was launched."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    return (page.locator("[role=status] a").get_attribute("href") or "").rsplit("/", 1)[-1]


def test_queued_and_running_runs_live_progress_cancel_and_retry(
    centre: Centre, browser: object, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    shots = centre.shots(tmp_path)
    dagster = centre.dagster
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.on("dialog", lambda dialog: dialog.accept())  # the cancel button asks to confirm
    write_control(centre.control, hold={CENTRE: True})  # no batch is written until the test says so

    # Two runs launched from the sync's page: the second waits in Dagster's queue behind the first.
    page.goto(f"{centre.view}/syncs/{CENTRE}")
    page.locator("form.launch input[name=user]").fill("alice")
    page.get_by_role("button", name="Run now").click()
    expect(page.get_by_role("status")).to_contain_text("Launched run")
    first = _launched(page)
    dagster.wait(lambda: dagster.run(first).status == "STARTED", f"run {first} to start")
    page.get_by_role("button", name="Run now").click()
    expect(page.get_by_role("status")).to_contain_text("Launched run")
    second = _launched(page)
    assert second != first
    dagster.wait(lambda: dagster.run(second).status == "QUEUED", f"run {second} to wait in the queue")

    page.goto(f"{centre.view}/runs")
    queue = page.locator("table.queue tbody tr")
    expect(queue).to_have_count(1)
    expect(queue.first).to_contain_text(second[:8])
    expect(queue.first.locator("td").first).to_have_text("1")
    expect(queue.first).to_contain_text("alice")
    page.screenshot(path=str(shots / "centre_queue.png"), full_page=True)
    page.goto(f"{centre.view}/syncs/{CENTRE}")
    expect(page.locator("table.queue tbody tr")).to_contain_text(second[:8])

    response = page.goto(f"{centre.view}/runs/{second}")
    assert response is not None and response.status == 200  # a queued run has a page, not a 404
    expect(page.locator("h1")).to_contain_text(f"Run {second[:8]} of {CENTRE}")
    expect(page.locator("h1 .badge.status-queued")).to_have_text("queued")
    expect(page.locator(".queue-position")).to_have_text("number 1 in line")
    page.screenshot(path=str(shots / "centre_queued_run.png"), full_page=True)

    # The running run's page follows it live: extract and transform are done, the load is held back.
    page.goto(f"{centre.view}/runs/{first}")
    expect(page.locator("h1 .badge.status-running")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("[data-stage=transform] .stage-text")).to_contain_text("40 of 40 rows", timeout=WAIT_MS)
    expect(page.locator("[data-count=processed]")).to_have_text("0")
    page.evaluate("window.sameDocument = true")
    write_control(centre.control, delay={CENTRE: 1.5})  # one batch of four every 1.5 s from now on
    load = page.locator("[data-stage=load] .stage-text")
    expect(load).to_contain_text("of 40 rows", timeout=WAIT_MS)
    expect(load).to_contain_text("rows/s")
    expect(load).to_contain_text("ETA")
    before = page.locator("[data-count=processed]").inner_text()
    bar_before = page.locator("[data-stage=load] .bar").get_attribute("aria-valuenow")
    expect(page.locator("[data-count=processed]")).not_to_have_text(before, timeout=WAIT_MS)
    expect(page.locator("[data-stage=load] .bar")).not_to_have_attribute("aria-valuenow", bar_before or "")
    assert page.evaluate("window.sameDocument") is True  # updated in place, not by reloading the page
    assert int(page.locator("[data-count=processed]").inner_text()) > int(before)
    page.screenshot(path=str(shots / "centre_live_run.png"), full_page=True)
    page.goto(f"{centre.view}/syncs/{CENTRE}")  # the run history shows the running run's counts so far too
    running = page.locator("table.runs tbody tr", has_text=first[:8])
    expect(running.locator(".badge.status-running")).to_be_visible()
    assert int(running.locator("td.num").nth(1).inner_text()) > 0  # created
    page.goto(f"{centre.view}/runs/{first}")
    expect(page.locator("h1 .badge.status-running")).to_be_visible()

    # Cancel from the run's page: the run stops after the batch it is writing; the page shows the outcome.
    page.get_by_role("button", name="Cancel run").click()
    expect(page.get_by_role("status")).to_contain_text("Cancellation requested")
    assert dagster.wait_finished(first).status == "CANCELED"
    write_control(centre.control)  # the queued run now starts, and runs at full speed
    expect(page.locator("h1 .badge.status-cancelled")).to_be_visible(timeout=WAIT_MS)
    created = int(page.locator("[data-count=created]").inner_text().replace(",", ""))
    assert 0 < created < 40  # the batches written before the cancel stay written
    page.screenshot(path=str(shots / "centre_cancelled_run.png"), full_page=True)
    assert dagster.wait_finished(second).status == "SUCCESS"

    # Retry the cancelled run, all steps, as dave: a Dagster re-execution that the ledger records under dave.
    page.locator("form.retry input[name=user]").fill("dave")
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text(f"Retry of run {first[:8]}")
    retry = page.url.split("/runs/", 1)[1].split("?", 1)[0]
    assert retry not in (first, second)
    finished = dagster.wait_finished(retry)
    assert finished.status == "SUCCESS" and finished.tags["sync/user"] == "dave"
    assert finished.tags["dagster/parent_run_id"] == first
    # The retry's page was following it live and reloads itself when it ends: wait for that reload, so that
    # the next navigation does not race it.
    expect(page.locator("h1 .badge.status-completed")).to_be_visible(timeout=WAIT_MS)
    page.goto(f"{centre.view}/runs/{retry}")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("retry")
    expect(facts).to_contain_text("dave")
    expect(facts.locator("a", has_text=first[:8])).to_be_visible()
    page.goto(f"{centre.view}/runs?user=dave")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    page.screenshot(path=str(shots / "centre_retry.png"), full_page=True)


SCHEDULE_STATE = """
query Schedule($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) { ... on Schedule { scheduleState { status } } }
}
"""


def test_a_schedule_is_shown_on_or_off_and_toggled_from_the_view(
    centre: Centre, browser: object, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    shots = centre.shots(tmp_path)
    selector = {
        "repositoryLocationName": "sync_pipelines",
        "repositoryName": "__repository__",
        "scheduleName": f"{CENTRE}_schedule",
    }

    def state() -> str:
        return str(
            centre.dagster.graphql(SCHEDULE_STATE, selector=selector)["scheduleOrError"]["scheduleState"]["status"]
        )

    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(centre.view)
    row = page.locator("table.syncs tbody tr", has_text=CENTRE)
    expect(row.locator(".sched .badge")).to_have_text("off")
    expect(row.locator("td.next-run")).to_have_text("-")  # an off schedule fires no run
    row.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("status")).to_contain_text(f"Schedule of {CENTRE} turned on")
    expect(row.locator(".sched .badge")).to_have_text("on")
    expect(row.locator("td.next-run")).to_have_text(re.compile(r"^20\d\d-01-01 00:00:00$"))
    assert state() == "RUNNING"
    page.screenshot(path=str(shots / "centre_schedule_on.png"), full_page=True)

    page.goto(f"{centre.view}/syncs/{CENTRE}")
    expect(page.locator("dd.next-run")).to_have_text(re.compile(r"^20\d\d-01-01 00:00:00$"))
    page.get_by_role("button", name="Turn off").click()
    expect(page.get_by_role("status")).to_contain_text(f"Schedule of {CENTRE} turned off")
    expect(page.locator("h1")).to_have_text(CENTRE)  # back on the sync's page
    expect(page.locator("dl.facts .sched .badge")).to_have_text("off")
    expect(page.locator("dd.next-run")).to_have_text("- (the schedule is off)")
    assert state() == "STOPPED"
    page.screenshot(path=str(shots / "centre_schedule_off.png"), full_page=True)
