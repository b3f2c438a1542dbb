"""The host list file-drop sensor: one run per file content, invalid lines skipped, files filed away."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, Definitions, RunRequest, SensorResult, build_sensor_context
from elasticsearch import Elasticsearch

from sync_pipelines.config import load_configs
from sync_pipelines.engine.host_files import parse_host_list
from sync_pipelines.orchestration import Tag, build_definitions, job_name
from sync_pipelines.orchestration.host_sensors import (
    HOST_FILE_KEY_TAG,
    INVALID_LINES_TAG,
    SKIPPED_LINES_TAG,
    sensor_name,
)
from sync_pipelines_tests.factories import host_sync_config, write_config
from sync_pipelines_tests.support.hosts import register_pool, seed_metrics

GOOD = "# DB hosts\n10.1.1.1\n\n10.1.1.2   # no data lately\n10.1.1.1\n"
BAD = "10.1.1.1\n# comment\nnot-an-ip\n10.1.1.300\n\n10.1.1.99\n"


def drop(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    past = time.time() - 60
    os.utime(path, (past, past))  # older than the sensor's settle time
    return path


def tick(defs: Definitions, cursor: str | None) -> SensorResult:
    """One sensor evaluation, as the daemon does it, with a freshly built sensor (as after a restart)."""
    sensor = defs.resolve_sensor_def(sensor_name("host_metrics"))
    context = build_sensor_context(instance=DagsterInstance.get(), cursor=cursor, definitions=defs)
    result = sensor(context)
    assert isinstance(result, SensorResult)
    return result


def launch(defs: Definitions, request: RunRequest) -> Any:
    job = defs.resolve_job_def(job_name("host_metrics"))
    return job.execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=DagsterInstance.get(), raise_on_error=False
    )


def test_parse_host_list_reports_invalid_lines_by_number() -> None:
    parsed = parse_host_list(BAD)
    assert parsed.ips == ["10.1.1.1", "10.1.1.99"]
    assert [(line.number, line.text) for line in parsed.invalid] == [(3, "not-an-ip"), (4, "10.1.1.300")]
    assert str(parsed.invalid[0]) == "line 3: 'not-an-ip' is not an IP address"
    assert parse_host_list(GOOD).ips == ["10.1.1.1", "10.1.1.2"]
    assert parse_host_list("\n# only comments\n").ips == []


@pytest.mark.slow
def test_file_sensor_runs_each_file_once_and_files_it_away(
    tmp_path: Path, es: Elasticsearch, index_prefix: str
) -> None:
    seed_metrics(es, index_prefix)
    target = f"sqlite:///{tmp_path / 'cmdb.db'}"
    register_pool(target, ["10.1.1.1", "10.1.1.2"])
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_config(
        tmp_path / "syncs",
        host_sync_config(
            es.transport.node_pool.get().base_url,
            target,
            f"{index_prefix}-*",
            source={
                "kind": "elasticsearch_hosts",
                "endpoint": es.transport.node_pool.get().base_url,
                "index": f"{index_prefix}-*",
                "host_files": {"folder": str(inbox)},
            },
        ),
    )
    defs = build_definitions(load_configs(tmp_path / "syncs"))
    good = drop(inbox, "good.txt", GOOD)
    bad = drop(inbox, "bad.txt", BAD)
    drop(inbox, "empty.txt", "# nothing here\nnot-an-ip\n")
    drop(inbox, "notes.md", "10.1.1.1\n")  # not matching the pattern

    first = tick(defs, None)

    requests = {r.tags["sync/host_file"]: r for r in first.run_requests or []}
    assert sorted(requests) == [str(bad), str(good)]
    assert requests[str(good)].run_key == hashlib.sha256(GOOD.encode()).hexdigest()
    assert requests[str(good)].run_config == {"host_ip_list": ["10.1.1.1", "10.1.1.2"]}
    assert requests[str(bad)].run_config == {"host_ip_list": ["10.1.1.1", "10.1.1.99"]}
    assert requests[str(bad)].tags[INVALID_LINES_TAG] == "3, 4"
    skipped = ["line 3: 'not-an-ip' is not an IP address", "line 4: '10.1.1.300' is not an IP address"]
    assert json.loads(requests[str(bad)].tags[SKIPPED_LINES_TAG]) == skipped
    assert SKIPPED_LINES_TAG not in requests[str(good)].tags
    assert (inbox / "failed" / "empty.txt").exists()
    assert "line 2: 'not-an-ip' is not an IP address" in (inbox / "failed" / "empty.txt.report.txt").read_text()

    # Before the runs finish, a new tick (after a restart: a new sensor, the stored cursor) requests nothing.
    rebuilt = build_definitions(load_configs(tmp_path / "syncs"))
    waiting = tick(rebuilt, first.cursor)
    assert not waiting.run_requests and good.exists() and bad.exists()

    runs = {path: launch(rebuilt, request) for path, request in requests.items()}
    assert all(run.success for run in runs.values())
    assert runs[str(bad)].dagster_run.tags[Tag.STATUS.value] == "completed"

    settled = tick(rebuilt, waiting.cursor)
    assert not settled.run_requests
    assert not good.exists() and not bad.exists()
    processed = inbox / "processed"
    assert sorted(p.name for p in processed.iterdir()) == [
        "bad.txt",
        "bad.txt.report.txt",
        "good.txt",
        "good.txt.report.txt",
    ]
    report = (processed / "bad.txt.report.txt").read_text()
    assert f"run: {runs[str(bad)].run_id}" in report and "status: completed" in report
    assert "skipped line 3: 'not-an-ip' is not an IP address" in report
    assert "skipped line 4: '10.1.1.300' is not an IP address" in report
    run_meta = runs[str(bad)].asset_materializations_for_node("host_metrics")[0].metadata
    assert run_meta["host_file"].value == str(bad) and run_meta["host_file_invalid_lines"].value == "3, 4"
    assert run_meta["host_file_skipped"].value == "\n".join(skipped)
    assert (inbox / "notes.md").exists()

    # The same list dropped again (under another name) is never run twice.
    again = drop(inbox, "again.txt", GOOD)
    repeat = tick(rebuilt, settled.cursor)
    assert not repeat.run_requests and not again.exists()
    assert (
        f"same content as the list of {runs[str(good)].run_id}"
        in (inbox / "failed" / "again.txt.report.txt").read_text()
    )
    assert runs[str(good)].dagster_run.tags[HOST_FILE_KEY_TAG] == hashlib.sha256(GOOD.encode()).hexdigest()


@pytest.mark.slow
def test_the_report_of_a_failed_file_says_why_the_run_failed(tmp_path: Path) -> None:
    """Elasticsearch cannot be reached: the file goes to failed/ with the run's error in its report."""
    target = f"sqlite:///{tmp_path / 'cmdb.db'}"
    register_pool(target, ["10.1.1.1"])
    inbox = tmp_path / "inbox"
    unreachable = "http://127.0.0.1:1"
    source = {
        "kind": "elasticsearch_hosts",
        "endpoint": unreachable,
        "index": "m-*",
        "host_files": {"folder": str(inbox)},
    }
    write_config(tmp_path / "syncs", host_sync_config(unreachable, target, "m-*", source=source))
    defs = build_definitions(load_configs(tmp_path / "syncs"))
    path = drop(inbox, "hosts.txt", "10.1.1.1\n")

    first = tick(defs, None)
    [request] = first.run_requests or []
    run = launch(defs, request)
    assert not run.success
    tick(defs, first.cursor)

    assert not path.exists()
    report = (inbox / "failed" / "hosts.txt.report.txt").read_text()
    assert f"run: {run.run_id}" in report and "status: failed" in report
    lines = report.splitlines()
    assert "error: sync 'host_metrics': sync host_metrics: 1 of 1 hosts failed, more than max_failure_ratio" in report
    [host] = [line for line in lines if line.startswith("failed host 10.1.1.1: ")]
    assert "port=1" in host and "Connection refused" in host
