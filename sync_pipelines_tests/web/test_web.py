"""The history view's pages through Starlette's TestClient, on a real SQLite ledger and record history."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.errors import LaunchError
from sync_pipelines.history import RunEntry, Trigger, open_ledger
from sync_pipelines.history.links import run_url, sync_url
from sync_pipelines.types import ConflictChoice
from sync_pipelines.web import create_app
from sync_pipelines.web.dagster_api import DagsterApi
from sync_pipelines.web.schedule import next_fire
from sync_pipelines_tests.support.live import free_port
from sync_pipelines_tests.support.web_history import SYNC, History, build_history

UTC = dt.UTC


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(tmp_path_factory.mktemp("web"))


@pytest.fixture
def client(history: History) -> Iterator[TestClient]:
    # Nothing listens on this port: a resolution cannot reach Dagster.
    app = create_app(history.config_dir, f"http://127.0.0.1:{free_port()}")
    with TestClient(app) as test_client:
        yield test_client


def rows(html: str, css_class: str) -> list[str]:
    """The <tr> elements of the table with ``css_class``."""
    table = html.split(f'<table class="{css_class}">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr[ >].*?</tr>", table.split("<tbody>", 1)[1], flags=re.S)


def record_keys(html: str) -> list[str]:
    """The keys in the records table."""
    return re.findall(r'<td class="mono key">(.*?)</td>', html)


def test_the_sync_list_shows_schedule_next_run_and_the_last_real_status(client: TestClient, history: History) -> None:
    page = client.get("/")
    assert page.status_code == 200
    [row] = rows(page.text, "syncs")
    assert SYNC in row and "incremental" in row and "0 0 2 * * ? (Asia/Shanghai)" in row
    assert "18:00:00" in row  # 02:00 in Shanghai is 18:00 UTC
    # The latest run is a failed dry run; the last status is that of the real run before it.
    assert "status-partial" in row and "status-failed" not in row
    assert f"/runs/{history.second}" in row


def test_the_run_history_filters_and_pages(client: TestClient, history: History) -> None:
    everything = client.get("/runs")
    scheduled = client.get("/runs", params={"trigger": "schedule"})
    by_alice = client.get("/runs", params={"user": "alice", "kind": "real"})
    dry = client.get("/runs", params={"kind": "dry"})
    dated = client.get("/runs", params={"from": "2026-11-21", "to": "2026-11-21"})
    paged = client.get("/runs", params={"page_size": 2, "page": 3})

    assert len(rows(everything.text, "runs")) == 5
    assert [history.first[:8] in r for r in rows(scheduled.text, "runs")] == [True]
    assert [history.second[:8] in r for r in rows(by_alice.text, "runs")] == [True]
    assert [history.dry[:8] in r for r in rows(dry.text, "runs")] == [True]
    assert [history.second[:8] in r for r in rows(dated.text, "runs")] == [True]
    assert "page 3 of 3" in paged.text and len(rows(paged.text, "runs")) == 1


def test_bad_parameters_and_unknown_names_are_named(client: TestClient) -> None:
    bad_status = client.get("/runs", params={"status": "done"})
    bad_date = client.get("/runs", params={"from": "21/11/2026"})
    unknown_sync = client.get("/syncs/nope")
    unknown_run = client.get("/runs/0123456789")
    bad_format = client.get("/runs/0123456789/records.pdf")

    assert (
        bad_status.status_code == 400 and "parameter &#39;status&#39;: &#39;done&#39; is not one of" in bad_status.text
    )
    assert bad_date.status_code == 400 and "is not a date (YYYY-MM-DD)" in bad_date.text
    assert (
        unknown_sync.status_code == 404 and "unknown sync &#39;nope&#39;; known syncs: orders_sync" in unknown_sync.text
    )
    assert unknown_run.status_code == 404 and "no run &#39;0123456789&#39;" in unknown_run.text
    assert bad_format.status_code == 404


def test_a_run_page_has_counts_entity_status_and_filtered_records(client: TestClient, history: History) -> None:
    page = client.get(f"/runs/{history.second}")
    updated = client.get(f"/runs/{history.second}", params={"action": "updated"})
    failed = client.get(f"/runs/{history.second}", params={"status": "failed"})
    none = client.get(f"/runs/{history.second}", params={"entity": "departments"})

    assert page.status_code == 200
    [entity] = rows(page.text, "entities")
    # 29 read and written rows (27 unchanged, counted but not stored): 28 succeed, order 3 fails, order 6 waits.
    assert "orders" in entity and "28 / 30" in entity
    assert record_keys(page.text) == ["order_id=3", "order_id=5", "order_id=6"]
    assert record_keys(updated.text) == ["order_id=5"]
    [change] = re.findall(r">status</td>.*?</tr>", updated.text, flags=re.S)
    assert re.findall(r'class="(?:before|after)">(.*?)</td>', change) == ["open", "paid"]
    assert record_keys(failed.text) == ["order_id=3"]
    assert "No records match." in none.text


def test_downloads_hold_exactly_the_filtered_records(client: TestClient, history: History) -> None:
    xlsx = client.get(f"/runs/{history.second}/records.xlsx", params={"action": "updated"})
    everything = client.get(f"/runs/{history.second}/records.csv")

    assert xlsx.status_code == 200 and f"{SYNC}-{history.second[:8]}.xlsx" in xlsx.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content), read_only=True)
    records = list(book["Records"].iter_rows(values_only=True))
    summary = dict(book["Summary"].iter_rows(min_row=2, values_only=True))
    assert [(r[0], r[2]) for r in records[1:]] == [("order_id=5", "updated")]
    assert summary["filter: action"] == "updated" and summary["run id"] == history.second
    lines = list(csv.reader(io.StringIO(everything.content.decode("utf-8-sig"))))
    assert [line[2] for line in lines[1:]] == ["order_id=3", "order_id=5", "order_id=6"]


def test_the_conflict_page_labels_each_side_and_reports_an_unreachable_dagster(
    client: TestClient, history: History
) -> None:
    page = client.get(f"/syncs/{SYNC}/conflicts")
    missing_user = client.post(
        f"/syncs/{SYNC}/conflicts/1/resolve", data={"choice": "keep_source"}, follow_redirects=False
    )
    bad_choice = client.post(f"/syncs/{SYNC}/conflicts/1/resolve", data={"choice": "source", "resolved_by": "bob"})
    unreachable = client.post(
        f"/syncs/{SYNC}/conflicts/1/resolve", data={"choice": "keep_target", "resolved_by": "bob"}
    )

    [fields] = re.findall(r'<table class="diff conflict-fields">.*?</table>', page.text, flags=re.S)
    assert "Source (new value)" in fields and "Target (edited)" in fields and "Baseline (last synced)" in fields
    [status_row] = [r for r in re.findall(r"<tr>.*?</tr>", fields, flags=re.S) if ">status<" in r]
    # Both sides changed the status since the last sync: its earlier value is not kept, only that it changed.
    assert re.findall(r"<td[^>]*>(.*?)</td>", status_row)[1:] == ["paid", "on hold", "<em>changed on both sides</em>"]
    assert "order_id=6" in page.text and "Keep source" in page.text and "Keep target" in page.text
    assert missing_user.status_code == 303 and "enter+who+resolves" in missing_user.headers["location"]
    assert bad_choice.status_code == 400 and "field &#39;choice&#39;: &#39;source&#39; is not one of" in bad_choice.text
    assert "did not answer" in unreachable.text and "127.0.0.1" in unreachable.text


def test_run_now_asks_who_runs_the_sync_and_reports_an_unreachable_dagster(client: TestClient) -> None:
    page = client.get(f"/syncs/{SYNC}")
    anonymous = client.post(f"/syncs/{SYNC}/run", data={"full_sync": "1"}, follow_redirects=False)
    unreachable = client.post(f"/syncs/{SYNC}/run", data={"full_sync": "1", "user": "carol"})
    elsewhere = client.post(
        f"/syncs/{SYNC}/run", data={"user": "carol"}, headers={"Origin": "https://evil.example.com"}
    )
    unknown = client.post("/syncs/nobody/run", data={"user": "carol"})

    [form] = re.findall(r'<form class="launch".*?</form>', page.text, flags=re.S)
    assert f'action="http://testserver/syncs/{SYNC}/run"' in form and ">Run now</button>" in form
    assert 'name="full_sync"' in form and 'name="dry_run"' in form and 'name="user" required' in form
    assert f"<code>sync_{SYNC}</code>:" in form and "from the watermark" in form
    assert anonymous.status_code == 303 and "enter+who+runs+the+sync" in anonymous.headers["location"]
    assert "did not answer" in unreachable.text and 'value="carol"' in unreachable.text
    assert elsewhere.status_code == 403 and "https://evil.example.com is refused" in elsewhere.text
    assert unknown.status_code == 404
    refused = client.post(
        f"/syncs/{SYNC}/conflicts/1/resolve",
        data={"choice": "keep_source", "resolved_by": "bob"},
        headers={"Origin": "https://evil.example.com"},
    )
    assert refused.status_code == 403


def test_a_form_posted_through_the_proxy_address_is_not_refused(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a proxy the browser's origin is the proxy's: the history URL or a forwarded host names it."""
    monkeypatch.setenv("SYNC_PIPELINES_HISTORY_URL", "https://sync.example.com/history/")
    proxied = {"Origin": "https://sync.example.com"}
    forwarded = {"Origin": "https://other.example.com", "X-Forwarded-Host": "other.example.com"}
    for headers in (proxied, forwarded, {"Origin": "http://testserver"}):
        answer = client.post(f"/syncs/{SYNC}/run", data={"user": "carol"}, headers=headers)
        assert answer.status_code == 200 and "did not answer" in answer.text, headers


def test_the_backfill_pages_list_each_partition_run_with_its_counts(client: TestClient, history: History) -> None:
    listing = client.get("/backfills")
    detail = client.get(f"/backfills/{history.backfill_id}")
    unknown = client.get("/backfills/none")

    [backfill] = rows(listing.text, "backfills")
    assert history.backfill_id in backfill and ">2</td>" in backfill
    partitions = rows(detail.text, "partitions")
    assert [("2026-11-01" in r, "2026-11-02" in r) for r in partitions] == [(True, False), (False, True)]
    assert "status-completed" in partitions[0] and ">12</td>" in partitions[0] and "status-failed" in partitions[1]
    assert unknown.status_code == 404


def test_the_sync_page_and_the_static_files(client: TestClient, history: History) -> None:
    page = client.get(f"/syncs/{SYNC}")
    style = client.get("/static/style.css")
    assert "Orders from the ERP into the warehouse." in page.text and f"/syncs/{SYNC}/conflicts" in page.text
    assert len(rows(page.text, "runs")) == 5
    assert style.status_code == 200 and "overflow-wrap: normal" in style.text


def test_a_launch_error_names_the_webserver() -> None:
    api = DagsterApi(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(LaunchError, match=r"the Dagster webserver at http://127\.0\.0\.1:\d+ did not answer"):
        api.resolve_conflicts(SYNC, [1], ConflictChoice.KEEP_SOURCE, "bob")


def test_links_follow_the_history_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_url("abc") == "http://127.0.0.1:3001/runs/abc"
    monkeypatch.setenv("SYNC_PIPELINES_HISTORY_URL", "https://sync.example.com/history/")
    assert sync_url("erp_orders") == "https://sync.example.com/history/syncs/erp_orders"


@pytest.mark.parametrize(
    ("cron", "timezone", "after", "expected"),
    [
        ("0 2 * * *", "Asia/Shanghai", "2026-12-03T09:00:00", "2026-12-03T18:00:00"),
        ("5 * * * *", "UTC", "2026-12-03T09:05:00", "2026-12-03T10:05:00"),
        ("0 3 * * 1", "Asia/Shanghai", "2026-12-03T09:00:00", "2026-12-06T19:00:00"),  # Monday 03:00 in Shanghai
        ("*/15 8-9 1,15 * *", "UTC", "2026-12-01T09:50:00", "2026-12-15T08:00:00"),
        ("30 1 * * *", "Europe/Berlin", "2026-03-28T12:00:00", "2026-03-29T00:30:00"),  # 01:30 CET, before 02:00 CEST
        ("0 0 30 2 *", "UTC", "2026-01-01T00:00:00", None),
    ],
)
def test_next_fire_times(cron: str, timezone: str, after: str, expected: str | None) -> None:
    found = next_fire(cron, timezone, dt.datetime.fromisoformat(after).replace(tzinfo=UTC))
    assert (found.replace(tzinfo=None).isoformat() if found else None) == expected


def test_the_view_reads_a_new_configuration_without_a_restart(client: TestClient, history: History) -> None:
    before = client.get("/")
    extra = history.config_dir / "broken.yaml"
    extra.write_text("name: broken\n", encoding="utf-8")
    try:
        broken = client.get("/")
    finally:
        extra.unlink()
    assert before.status_code == 200
    assert broken.status_code == 500 and "broken.yaml" in broken.text and "Invalid sync configuration" in broken.text


def test_the_ui_command_is_registered(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sync_pipelines.cli import main

    result = CliRunner().invoke(main, ["ui", "--help"])
    assert result.exit_code == 0 and "--port" in result.output and "127.0.0.1" in result.output


@pytest.mark.slow
def test_the_view_does_not_import_dagster() -> None:
    """The view sits beside the CLI and reads history through plain Python; Dagster stays in orchestration/."""
    import subprocess
    import sys

    code = "import sys, sync_pipelines.web.app; print('dagster' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- runs in every state, schedules and conflicts on the sync pages, and the view's small details


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> tuple[History, str]:
    """A history whose latest run is still ``running``: its row holds zeros, its committed records do not."""
    history = build_history(tmp_path_factory.mktemp("web_running"))
    cfg = history.config()
    engine = sa.create_engine(history.source_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET qty = 'x', updated_at = '2026-11-22 09:00:00' WHERE id IN (7, 8)"))
        conn.execute(sa.text("UPDATE orders SET customer = 'new', updated_at = '2026-11-22 09:00:00' WHERE id = 9"))
    engine.dispose()
    run_id = str(uuid.uuid4())
    run_sync(cfg, RunOptions(run_id=run_id))
    with open_ledger(cfg) as ledger:  # as the ledger holds it while the load step runs
        ledger.finish_run(RunEntry(run_id, SYNC, Trigger.MANUAL, "incremental", user="erin"))
    return history, run_id


def test_a_running_run_shows_the_records_it_committed_so_far_and_polls_for_more(
    running: tuple[History, str],
) -> None:
    history, run_id = running
    with TestClient(create_app(history.config_dir, f"http://127.0.0.1:{free_port()}")) as client:
        page = client.get(f"/runs/{run_id}")
        state = client.get(f"/runs/{run_id}/progress.json").json()

    assert page.status_code == 200 and "status-running" in page.text and "Counts so far" in page.text
    assert f'data-progress-url="http://testserver/runs/{run_id}/progress.json"' in page.text
    assert "/static/live.js" in page.text and ">Cancel run</button>" in page.text and ">Retry</button>" not in page.text
    # Two orders fail their cast, one is updated: the ledger row still says 0 of each, the records do not.
    assert state["status"] == "running" and state["finished"] is False
    assert (state["counts"]["failed"], state["counts"]["updated"]) == (2, 1)
    assert re.search(r'data-count="failed">2<', page.text) and re.search(r'data-count="updated">1<', page.text)
    assert state["stages"] == []  # no Dagster answers here: no progress lines to read
    with TestClient(create_app(history.config_dir, f"http://127.0.0.1:{free_port()}")) as client:
        listing = client.get("/runs", params={"status": "running"})
    [row] = rows(listing.text, "runs")
    cells = re.findall(r'<td class="num">(\d+)</td>', row)  # processed, created, updated, deleted, failed, conflicted
    assert run_id[:8] in row and "status-running" in row and cells[2] == "1" and cells[4] == "2"


def test_a_finished_run_offers_a_retry_and_says_what_it_does(client: TestClient, history: History) -> None:
    partial = client.get(f"/runs/{history.second}")
    failed = client.get(f"/runs/{history.dry}")
    [partial_form] = re.findall(r'<form class="retry".*?</form>', partial.text, flags=re.S)
    [failed_form] = re.findall(r'<form class="retry".*?</form>', failed.text, flags=re.S)
    assert "it reads the source again" in partial_form and "from_failure" not in partial_form
    assert 'name="from_failure" value="0" checked' in failed_form and "reuses the staged extract" in failed_form
    assert ">Cancel run</button>" not in partial.text


def test_cancel_retry_and_schedule_buttons_report_an_unreachable_dagster(client: TestClient, history: History) -> None:
    cancel = client.post(f"/runs/{history.second}/cancel", follow_redirects=False)
    anonymous = client.post(f"/runs/{history.second}/retry", data={"from_failure": "0"}, follow_redirects=False)
    retry = client.post(f"/runs/{history.second}/retry", data={"user": "dave"})
    toggle = client.post(f"/syncs/{SYNC}/schedule", data={"on": "0", "back": f"/syncs/{SYNC}"})
    elsewhere = {"Origin": "https://evil.example.com"}
    refused = [
        client.post(f"/runs/{history.second}/cancel", headers=elsewhere).status_code,
        client.post(f"/runs/{history.second}/retry", data={"user": "dave"}, headers=elsewhere).status_code,
        client.post(f"/syncs/{SYNC}/schedule", data={"on": "1"}, headers=elsewhere).status_code,
    ]
    offsite = client.post(
        f"/syncs/{SYNC}/schedule", data={"on": "1", "back": "//evil.example.com"}, follow_redirects=False
    )

    assert cancel.status_code == 303 and cancel.headers["location"].startswith(f"/runs/{history.second}?error=")
    assert anonymous.status_code == 303 and "enter+who+retries" in anonymous.headers["location"]
    assert retry.status_code == 200 and "did not answer" in retry.text and 'value="dave"' in retry.text
    assert toggle.status_code == 200 and "did not answer" in toggle.text and "<h1>orders_sync</h1>" in toggle.text
    assert refused == [403, 403, 403]
    assert offsite.headers["location"].startswith("/?error=")


def test_schedules_show_on_or_off_and_an_off_schedule_has_no_next_run(client: TestClient, history: History) -> None:
    from sync_pipelines.web.dagster_api import ScheduleState
    from sync_pipelines.web.pages import _row

    listing = client.get("/")
    [row] = rows(listing.text, "syncs")
    # Dagster does not answer here: the configured default (on) is shown, and said to be a default.
    assert '<span class="badge on">on</span>' in row and "default: Dagster did not answer" in row
    assert ">Turn off</button>" in row and 'name="back" value="/"' in row

    cfg, now = history.config(), dt.datetime(2026, 12, 3, 9, tzinfo=UTC)
    off = _row(cfg, {f"{SYNC}_schedule": ScheduleState(f"{SYNC}_schedule", False, "x")}, now, None)
    on = _row(cfg, {f"{SYNC}_schedule": ScheduleState(f"{SYNC}_schedule", True, "x")}, now, None)
    assert (off.schedule_on, off.schedule_known, off.next_run) == (False, True, None)
    assert on.schedule_on and on.next_run == dt.datetime(2026, 12, 3, 18, tzinfo=UTC)
    site = client.app.state.site  # type: ignore[attr-defined]
    html = site.templates.env.get_template("syncs.html").render(
        rows=[off], url_for=lambda route, **kw: f"/{route}/{kw.get('name', '')}", notice=None, error=None
    )
    [off_row] = rows(html, "syncs")
    assert '<span class="badge off">off</span>' in off_row and ">Turn on</button>" in off_row
    assert '<td class="nowrap next-run">-</td>' in off_row


def test_open_conflicts_are_counted_on_the_sync_list_and_the_sync_page(client: TestClient) -> None:
    listing = client.get("/")
    page = client.get(f"/syncs/{SYNC}")
    link = f'<a class="badge conflicts-open" href="http://testserver/syncs/{SYNC}/conflicts">1 open conflict</a>'
    assert link in rows(listing.text, "syncs")[0]
    assert f'<dd class="open-conflicts">{link}</dd>' in page.text


def test_queued_runs_need_dagster_and_the_page_says_when_it_did_not_answer(client: TestClient) -> None:
    runs = client.get("/runs")
    assert 'class="hint queue-unknown">Dagster\'s queue could not be read' in runs.text
    assert client.get("/runs/0123456789/progress.json").status_code == 404


def test_small_details_favicon_red_only_for_failures_one_time_format_and_no_batch_minus_one(
    client: TestClient, history: History
) -> None:
    from sync_pipelines.web.site import batch, shown

    favicon = client.get("/favicon.ico")
    assert favicon.status_code == 200 and favicon.headers["content-type"].startswith("image/svg+xml")
    assert 'rel="icon"' in client.get("/").text and client.get("/static/favicon.svg").status_code == 200
    partial = client.get(f"/runs/{history.second}").text
    clean = client.get("/runs/bf-run-1").text
    assert 'class="count count-failed nonzero"' in partial and 'class="count count-failed"' in clean
    assert ".count-failed.nonzero .n { color: var(--bad); }" in client.get("/static/style.css").text

    conflicts = client.get(f"/syncs/{SYNC}/conflicts").text
    shown_times = re.findall(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[.\d]*", conflicts + partial)
    assert shown_times and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", t) for t in shown_times), shown_times
    assert shown("2026-11-20T08:06:00.000000") == "2026-11-20 08:06:00" == shown(dt.datetime(2026, 11, 20, 8, 6))
    assert shown("2026-11-20T08:06:00.250000+00:00") == "2026-11-20 08:06:00.25"
    assert shown("2026-11-20") == "2026-11-20" and shown(7) == 7
    assert (batch(-1), batch(0), batch(None)) == ("after the last", "0", "-")
