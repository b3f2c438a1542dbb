"""The sync centre's forms and pages through Starlette's TestClient, on real SQLite ledgers and a real CMDB:
a backfill of a range of partitions, the connection test, the statistics, a host-list run, and the
hosts of a host-metrics run. Launching through a live Dagster is e2e/test_web_forms_browser.py's part.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from starlette.testclient import TestClient

from sync_pipelines.config import load_configs
from sync_pipelines.connectors.cmdb import CmdbWriter
from sync_pipelines.connectors.es_hosts import HostMetrics
from sync_pipelines.demo.hosts import build_cmdb
from sync_pipelines.history import RunEntry, Trigger, open_ledger
from sync_pipelines.history.queries import runs_since
from sync_pipelines.history.stats import compute_stats
from sync_pipelines.types import HostStatus, RunStatus
from sync_pipelines.web import create_app
from sync_pipelines.web.backfill_form import partition_range
from sync_pipelines_tests.support.live import REPO, free_port
from sync_pipelines_tests.support.web_history import SYNC, History, build_history

DAILY = "orders_daily"
HOURLY = "orders_hourly"
HOSTS = "host_metrics"
BROKEN = "orders_unreachable"
SECRET = "s3cr3t-Pw-0815"
HOST_RUN = "host-run-0002"
CHECK_POLLS = 600


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """``orders_sync``'s history, plus a daily and an hourly partitioned copy, an unreachable copy and a
    host-metrics sync whose CMDB holds two runs' hosts."""
    root = tmp_path_factory.mktemp("web_forms")
    history = build_history(root)
    base = yaml.safe_load((history.config_dir / f"{SYNC}.yaml").read_text(encoding="utf-8"))
    copies = {
        DAILY: {"partitions": {"granularity": "daily", "start": "2026-11-01"}},
        HOURLY: {"partitions": {"granularity": "hourly", "start": "2026-11-01 06:00"}},
        BROKEN: {},
    }
    for name, extra in copies.items():
        data = {**base, **extra, "name": name, "target": {**base["target"], "url": f"sqlite:///{root / name}.db"}}
        data.pop("schedule", None)
        if name == BROKEN:
            data["source"] = {
                **base["source"],
                "url": f"postgresql+psycopg://reader:{SECRET}@127.0.0.1:{free_port()}/erp",
            }
        (history.config_dir / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    hosts = yaml.safe_load((REPO / "syncs" / f"{HOSTS}.yaml").read_text(encoding="utf-8"))
    hosts["source"]["endpoint"] = f"http://127.0.0.1:{free_port()}"
    del hosts["source"]["host_files"]
    hosts["target"]["url"] = f"sqlite:///{build_cmdb(root / 'cmdb.db')}"
    (history.config_dir / f"{HOSTS}.yaml").write_text(yaml.safe_dump(hosts, allow_unicode=True), encoding="utf-8")
    _host_runs(root)
    return history


def _metrics(ip: str, cpu: float, status: HostStatus = HostStatus.SUCCESS) -> HostMetrics:
    if status is not HostStatus.SUCCESS:
        return HostMetrics(ip, status, error="connection reset by the cluster" if status is HostStatus.FAILED else None)
    return HostMetrics(ip, status, f"db-{ip}", None, cpu, cpu / 2, 40.0, 20.0, 70.0, 35.0, 12)


def _host_runs(root: Path) -> None:
    """Two runs written by the CMDB writer: the second leaves 10.1.1.1 unchanged and updates 10.1.1.2."""
    [cfg] = [c for c in load_configs(root / "syncs") if c.name == HOSTS]
    writer = CmdbWriter(cfg)
    writer.prepare()
    runs = {
        "host-run-0001": [_metrics("10.1.1.1", 50.0), _metrics("10.1.1.2", 60.0)],
        HOST_RUN: [
            _metrics("10.1.1.1", 50.0),
            _metrics("10.1.1.2", 75.0),
            _metrics("10.1.1.3", 0, HostStatus.FAILED),
            _metrics("10.9.9.9", 10.0),
        ],
    }
    for run_id, hosts in runs.items():
        with writer.engine.begin() as conn:
            writer.write(conn, hosts, run_id=run_id, register=False, query_time_range="30d")
    writer.engine.dispose()
    with open_ledger(cfg) as ledger:
        started = dt.datetime(2026, 11, 25, 2, 0)
        entry = RunEntry(HOST_RUN, HOSTS, Trigger.SENSOR, "incremental", RunStatus.PARTIAL, started_at=started)
        entry.finished_at, entry.duration_s = started + dt.timedelta(seconds=4), 4.0
        ledger.finish_run(entry)


@pytest.fixture
def client(history: History) -> Iterator[TestClient]:
    # Nothing listens on this port: a launch cannot reach Dagster.
    app = create_app(history.config_dir, f"http://127.0.0.1:{free_port()}")
    with TestClient(app) as test_client:
        yield test_client


def rows(html: str, css_class: str) -> list[str]:
    """The <tr> elements of the body of the table with ``css_class``."""
    table = html.split(f'<table class="{css_class}">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr[ >].*?</tr>", table.split("<tbody>", 1)[1], flags=re.S)


# ----------------------------------------------------------------------------- backfill


def test_only_a_partitioned_sync_offers_the_backfill_form(client: TestClient) -> None:
    daily = client.get(f"/syncs/{DAILY}")
    plain = client.get(f"/syncs/{SYNC}")

    [form] = re.findall(r'<form class="backfill".*?</form>', daily.text, flags=re.S)
    assert f'action="http://testserver/syncs/{DAILY}/backfill"' in form
    assert 'name="first"' in form and 'name="last"' in form and 'name="user" required' in form
    assert 'placeholder="2024-03-01"' in form and "daily partitions from 2026-11-01" in form
    assert "one run per partition" in form
    assert 'class="backfill"' not in plain.text


@pytest.mark.parametrize(
    ("sync", "first", "last", "expected"),
    [
        (DAILY, "2026-11-03", "2026-11-05", 3),
        (DAILY, "2026-11-05", "2026-11-05", 1),
        (HOURLY, "2026-11-01-06:00", "2026-11-02-05:00", 24),
        (DAILY, "2026-11-05", "2026-11-03", "the last partition 2026-11-03 comes before the first 2026-11-05"),
        (DAILY, "2026-10-31", "2026-11-03", "the first partition 2026-10-31 is before the sync's first partition"),
        (DAILY, "3 Nov", "2026-11-03", "first partition '3 Nov' is not a daily partition key such as 2024-03-01"),
        (HOURLY, "2026-11-01", "2026-11-01", "is not a hourly partition key such as 2024-03-01-06:00"),
        (DAILY, "", "2026-11-03", "enter the first partition"),
        (DAILY, "2000-01-01", "2099-01-01", "a backfill from this page covers at most 10,000"),
        (SYNC, "2026-11-01", "2026-11-02", "sync 'orders_sync' has no partitions"),
    ],
)
def test_a_backfill_range_is_checked_against_the_sync_partitions(
    history: History, sync: str, first: str, last: str, expected: int | str
) -> None:
    cfg = {c.name: c for c in load_configs(history.config_dir)}[sync]
    if sync == DAILY and first == "2000-01-01":
        assert cfg.partitions is not None
        cfg = cfg.model_copy(
            update={"partitions": cfg.partitions.model_copy(update={"start": dt.datetime(2000, 1, 1)})}
        )
    if isinstance(expected, int):
        assert partition_range(cfg, first, last).count == expected
    else:
        with pytest.raises(ValueError, match=re.escape(expected)):
            partition_range(cfg, first, last)


def test_a_bad_backfill_range_comes_back_to_the_form_with_the_reason(client: TestClient) -> None:
    refused = client.post(f"/syncs/{DAILY}/backfill", data={"first": "2026-11-05", "last": "2026-11-03", "user": "dan"})
    anonymous = client.post(f"/syncs/{DAILY}/backfill", data={"first": "2026-11-03", "last": "2026-11-05"})
    unreachable = client.post(
        f"/syncs/{DAILY}/backfill", data={"first": "2026-11-03", "last": "2026-11-05", "user": "dan"}
    )
    elsewhere = client.post(
        f"/syncs/{DAILY}/backfill",
        data={"first": "2026-11-03", "last": "2026-11-05", "user": "dan"},
        headers={"Origin": "https://evil.example.com"},
    )

    [error] = re.findall(r'id="backfill-error">(.*?)</p>', refused.text)
    assert error == "the last partition 2026-11-03 comes before the first 2026-11-05"
    assert 'value="2026-11-05"' in refused.text and 'value="dan"' in refused.text  # the form keeps what was typed
    assert "enter who starts the backfill" in anonymous.text
    assert "did not answer" in re.findall(r'id="backfill-error">(.*?)</p>', unreachable.text)[0]
    assert elsewhere.status_code == 403


def test_a_just_launched_backfill_has_its_page_before_its_first_run(client: TestClient, history: History) -> None:
    launched = client.get(
        "/backfills/abcdefgh",
        params={"launched": "1", "sync": DAILY, "first": "2026-11-03", "last": "2026-11-05", "by": "dan"},
    )
    unknown = client.get("/backfills/abcdefgh")
    known = client.get(f"/backfills/{history.backfill_id}", params={"launched": "1", "sync": SYNC, "by": "dan"})

    assert launched.status_code == 200
    assert re.search(r"dan started this backfill of\s*<a[^>]*>orders_daily</a>", launched.text)
    assert "No partition run has started yet." in launched.text
    assert unknown.status_code == 404
    assert len(rows(known.text, "partitions")) == 2


# ----------------------------------------------------------------------------- connection test


def _finished_check(client: TestClient, sync: str) -> str:
    started = client.post(f"/syncs/{sync}/check", follow_redirects=False)
    assert started.status_code == 303
    location = started.headers["location"]
    assert re.fullmatch(rf"/syncs/{sync}/check\?test=[0-9a-f]{{12}}", location)
    for _ in range(CHECK_POLLS):
        page = client.get(location)
        assert page.status_code == 200
        if 'id="check-running"' not in page.text:
            assert '<meta http-equiv="refresh"' not in page.text
            return page.text
        assert '<meta http-equiv="refresh" content="1">' in page.text  # the page reloads itself while testing
        time.sleep(0.1)
    raise AssertionError(f"the connection test of {sync} did not end")


def test_the_connection_test_runs_from_the_view_and_shows_each_endpoint(client: TestClient) -> None:
    ready = _finished_check(client, SYNC)

    source, target = rows(ready, "check")
    assert "Every endpoint is ready." in ready
    assert "endpoint-source" in source and ">OK</span>" in source and " ms</td>" in source
    assert "table &#39;orders&#39; has the mapped columns" in source and "read one row" in source
    assert "endpoint-target" in target and ">OK</span>" in target and "test write rolled back" in target


def test_a_failing_endpoint_shows_its_error_and_no_secret(client: TestClient) -> None:
    page = _finished_check(client, BROKEN)

    source, target = rows(page, "check")
    assert "An endpoint is not ready" in page
    assert ">FAILED</span>" in source and "127.0.0.1" in source and 'class="error-cell"></td>' not in source
    assert ">OK</span>" in target
    assert SECRET not in page


def test_an_unknown_connection_test_is_a_404(client: TestClient) -> None:
    assert client.get(f"/syncs/{SYNC}/check", params={"test": "000000000000"}).status_code == 404
    assert client.get(f"/syncs/{SYNC}/check").status_code == 200


# ----------------------------------------------------------------------------- statistics


def test_the_statistics_page_shows_the_ledger_figures(client: TestClient, history: History) -> None:
    page = client.get(f"/syncs/{SYNC}/statistics", params={"days": 3660})
    [cfg] = [c for c in load_configs(history.config_dir) if c.name == SYNC]
    stats = compute_stats(runs_since([cfg], dt.datetime(2000, 1, 1)), [SYNC])[SYNC]

    assert page.status_code == 200 and stats.runs == 4  # the dry run is left out
    assert re.search(r'id="stat-runs"><span class="n">4</span>', page.text)
    # first partial, second completed or partial, partition 2 failed: 3 of 4 succeeded
    assert stats.success_rate == 0.75 and "75.0 %" in page.text and "(3 / 4 ended)" in page.text
    assert "1 dry run(s) left out" in page.text
    [by_status] = rows(page.text, "by-status")
    cells = re.findall(r'<td class="num">(\d+)</td>', by_status)
    assert [int(c) for c in cells] == [stats.by_status.get(s, 0) for s in RunStatus]
    first, second = rows(page.text, "partition-stats")
    assert "2026-11-01" in first and "status-completed" in first and "needs-rerun" not in first
    assert "2026-11-02" in second and "status-failed" in second and 'class="needs-rerun"' in second
    assert "run it again" in second


def test_the_statistics_window_is_checked(client: TestClient) -> None:
    recent = client.get(f"/syncs/{SYNC}/statistics", params={"days": 1})
    bad = client.get(f"/syncs/{SYNC}/statistics", params={"days": "a week"})

    daily = client.get(f"/syncs/{DAILY}/statistics")

    assert re.search(r'id="stat-runs"><span class="n">0</span>', recent.text)
    assert "Per partition" not in recent.text  # a sync without partitions, whose partition runs are out of the window
    assert "No partition run in the window." in daily.text and "success rate (0 / 0 ended)" in daily.text
    assert bad.status_code == 400 and "is not a whole number" in bad.text


def test_the_sync_page_links_its_tools(client: TestClient) -> None:
    page = client.get(f"/syncs/{SYNC}")
    hosts = client.get(f"/syncs/{HOSTS}")

    assert f'href="http://testserver/syncs/{SYNC}/statistics"' in page.text
    assert f'href="http://testserver/syncs/{SYNC}/check"' in page.text
    assert 'id="hosts-link"' not in page.text
    assert f'id="hosts-link" href="http://testserver/syncs/{HOSTS}/hosts"' in hosts.text


# ----------------------------------------------------------------------------- host-list run

TYPED = "10.1.1.1\n# the web tier\nnot-an-ip\n10.1.1.2  # db\n\n10.1.1.1\n"
FILE = "10.1.1.3\n10.1.1.300\n"


def test_the_host_list_form_names_every_malformed_line(client: TestClient) -> None:
    form = client.get(f"/syncs/{HOSTS}/hosts")
    refused = client.post(
        f"/syncs/{HOSTS}/hosts",
        data={"hosts": TYPED, "time_range": "2 weeks", "user": "erin"},
        files={"file": ("hosts.txt", FILE.encode(), "text/plain")},
    )
    empty = client.post(f"/syncs/{HOSTS}/hosts", data={"hosts": "# none\n", "user": "erin"})
    not_hosts = client.get(f"/syncs/{SYNC}/hosts")

    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text
    assert 'name="hosts"' in form.text and 'type="file" name="file"' in form.text and 'placeholder="30d"' in form.text
    assert refused.status_code == 400
    problems = re.findall(r"<li>(.*?)</li>", refused.text.split('id="hosts-problems"', 1)[1].split("</div>", 1)[0])
    assert problems == [
        "typed list, line 3: &#39;not-an-ip&#39; is not an IP address",
        "file hosts.txt, line 2: &#39;10.1.1.300&#39; is not an IP address",
        "invalid time range &#39;2 weeks&#39;: expected a positive number and a unit m, h, d or w "
        "(e.g. 7d, 30d, 1h, 24h)",
    ]
    assert "# the web tier" in refused.text and 'value="erin"' in refused.text  # what was typed stays
    assert empty.status_code == 400 and "no host IP: type one per line" in empty.text
    assert not_hosts.status_code == 404 and "takes no host list" in not_hosts.text


def test_a_valid_host_list_goes_to_dagster(client: TestClient) -> None:
    typed_only = client.post(
        f"/syncs/{HOSTS}/hosts", data={"hosts": "10.1.1.1\n10.1.1.2\n", "user": "erin"}, follow_redirects=False
    )
    with_file = client.post(
        f"/syncs/{HOSTS}/hosts",
        data={"user": "erin", "time_range": "7d"},
        files={"file": ("hosts.txt", b"\xef\xbb\xbf10.1.1.3\n# done\n", "text/plain")},
    )
    anonymous = client.post(f"/syncs/{HOSTS}/hosts", data={"hosts": "10.1.1.1\n"})

    # Nothing answers at the Dagster address: the launch was tried, and the form says why it failed.
    assert typed_only.status_code == 303 and typed_only.headers["location"].startswith(f"/syncs/{HOSTS}/hosts?error=")
    assert with_file.status_code == 200 and "did not answer" in with_file.text and 'value="erin"' in with_file.text
    assert anonymous.status_code == 400 and "enter who runs the hosts" in anonymous.text


# ----------------------------------------------------------------------------- the hosts of a run


def test_a_host_run_page_lists_every_host_by_what_happened_to_it(client: TestClient) -> None:
    page = client.get(f"/runs/{HOST_RUN}")

    assert page.status_code == 200
    lists = dict(re.findall(r'id="hosts-(\w+)">(.*?)</dd>', page.text))
    assert lists == {
        "registered": "-",
        "created": "-",
        "updated": "10.1.1.2",
        "unchanged": "10.1.1.1",
        "failed": "10.1.1.3",
        "no_data": "-",
        "not_in_pool": "10.9.9.9",
    }
    hosts = rows(page.text, "hosts")
    assert [re.search(r'<td class="mono">(.*?)</td>', h).group(1) for h in hosts] == [  # type: ignore[union-attr]
        "10.1.1.3",
        "10.1.1.1",
        "10.1.1.2",
        "10.9.9.9",
    ]
    assert "connection reset by the cluster" in hosts[0] and ">unchanged</td>" in hosts[1]
    # Dagster is not reachable here: the page says what it could not read instead of failing.
    assert "The run&#39;s tags (its dropped file) could not be read" in page.text


def test_a_plain_sync_run_page_has_no_host_section(client: TestClient, history: History) -> None:
    page = client.get(f"/runs/{history.second}")
    assert page.status_code == 200 and 'id="hosts"' not in page.text


def test_the_cmdb_writer_records_unchanged_hosts_for_the_run_page(history: History) -> None:
    [cfg] = [c for c in load_configs(history.config_dir) if c.name == HOSTS]
    engine = sa.create_engine(cfg.target.url)
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT host_ip, action FROM _sync_host_results WHERE run_id = :r ORDER BY host_ip"),
            {"r": HOST_RUN},
        ).all()
    engine.dispose()
    assert [tuple(r) for r in found] == [
        ("10.1.1.1", "unchanged"),
        ("10.1.1.2", "updated"),
        ("10.1.1.3", "failed"),
        ("10.9.9.9", "skipped"),
    ]
