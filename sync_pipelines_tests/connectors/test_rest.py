"""The ``rest`` source against a real local HTTP server (``support/http_api.py``): every paginator and auth
type, nested fields and casts, incremental reads with an inclusive filter and ties on the cursor,
retried transient failures, and the messages of permanent ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipelines.config import SyncConfig
from sync_pipelines.errors import PermanentConnectorError, TransientConnectorError
from sync_pipelines.kinds import check_sync
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.factories import run
from sync_pipelines_tests.support.http_api import DROP, LocalApi, Reply, person

TOKEN = "s3cr3t-directory-token"
USER_MAPPING = {
    "user_id": {"source": "id", "type": "integer"},
    "name": {"source": "profile.name", "type": "string"},
    "email": {"source": "profile.email", "type": "string"},
    "department_id": {"source": "department.id", "type": "integer"},
    "updated_at": {"type": "datetime"},
}


def rest_config(api: LocalApi, target: Path, path: str = "/page", **source: Any) -> SyncConfig:
    """A sync of the API's users into the SQLite table ``users`` of ``target``."""
    paginators = {
        "/page": {"type": "page_number", "size": 2},
        "/offset": {"type": "offset", "limit": 2},
        "/cursor": {"type": "cursor", "cursor_path": "meta.next_cursor"},
        "/link": {"type": "link_header"},
        "/next": {"type": "next_url", "next_url_path": "links.next"},
        "/list": {"type": "single_page"},
    }
    overrides = {k: source.pop(k) for k in list(source) if k in ("mode", "cursor", "batch_size", "delete_missing")}
    return SyncConfig.model_validate(
        {
            "name": "directory_users",
            "source": {
                "kind": "rest",
                "url": api.url + path,
                "records": None if path == "/list" else "data.items",
                "paginator": paginators[path],
                "retries": {"attempts": 3, "backoff_s": 0},
                **source,
            },
            "target": {"kind": "sql", "url": f"sqlite:///{target}", "table": "users", "key": ["user_id"]},
            "mapping": USER_MAPPING,
            **overrides,
        }
    )


def users(target: Path) -> dict[int, dict[str, Any]]:
    engine = sa.create_engine(f"sqlite:///{target}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM users")).mappings().all()
    engine.dispose()
    return {int(r["user_id"]): dict(r) for r in rows}


@pytest.mark.parametrize("path", ["/page", "/offset", "/cursor", "/link", "/next", "/list"])
def test_each_paginator_reads_every_page(local_api: LocalApi, tmp_path: Path, path: str) -> None:
    result = run(rest_config(local_api, tmp_path / "t.db", path), "r1")
    assert result.status is RunStatus.COMPLETED, result.error
    assert sorted(users(tmp_path / "t.db")) == [1, 2, 3, 4, 5]
    pages = len(local_api.state.queries(path))
    assert pages == (1 if path == "/list" else 3)  # the first page, read for the column types, is read once


def test_nested_fields_missing_fields_and_bad_values(local_api: LocalApi, tmp_path: Path) -> None:
    local_api.state.records = [
        person(1),
        {"id": 2, "updated_at": "2024-01-01T00:00:00Z"},  # no profile, no department
        person(3, department={"id": "not a number"}),
    ]
    result = run(rest_config(local_api, tmp_path / "t.db"), "r1")
    rows = users(tmp_path / "t.db")
    assert rows[1]["email"] == "user1@example.com" and rows[1]["department_id"] == 11
    assert rows[2]["name"] is None and rows[2]["department_id"] is None
    assert 3 not in rows
    assert (result.counts.created, result.counts.failed) == (2, 1)


@pytest.mark.parametrize(
    ("auth", "server"),
    [
        ({"type": "bearer", "token": "${DIR_SECRET}"}, ("bearer", TOKEN)),
        ({"type": "basic", "username": "reader", "password": "${DIR_SECRET}"}, ("basic", "reader", TOKEN)),
        ({"type": "header", "name": "X-API-Key", "value": "${DIR_SECRET}"}, ("header", "X-API-Key", TOKEN)),
        ({"type": "query", "name": "api_key", "value": "${DIR_SECRET}"}, ("query", "api_key", TOKEN)),
    ],
)
def test_each_auth_type(
    local_api: LocalApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: dict[str, str], server: tuple[str, ...]
) -> None:
    local_api.state.auth = server
    monkeypatch.setenv("DIR_SECRET", TOKEN)
    result = run(rest_config(local_api, tmp_path / "t.db", auth=auth), "r1")
    assert result.status is RunStatus.COMPLETED, result.error
    assert len(users(tmp_path / "t.db")) == 5

    monkeypatch.setenv("DIR_SECRET", "a-wrong-secret-value")
    with pytest.raises(PermanentConnectorError) as caught:
        run(rest_config(local_api, tmp_path / "t.db", auth=auth), "r2")
    message = str(caught.value)
    assert "HTTP 401" in message and "directory_users" in message and f"{local_api.url}/page" in message
    assert f"auth {auth['type']}" in message
    assert "a-wrong-secret-value" not in message and TOKEN not in message


def test_incremental_with_an_inclusive_filter_and_ties(local_api: LocalApi, tmp_path: Path) -> None:
    t1, t2, t3 = "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"
    local_api.state.records = [person(1, t1), person(2, t1), person(3, t2), person(4, t2), person(5, t2)]
    config = rest_config(
        local_api,
        tmp_path / "t.db",
        incremental={"param": "updated_since"},
        mode="incremental",
        cursor="updated_at",
        batch_size=2,
    )
    first = run(config, "r1")
    assert first.counts.created == 5
    assert first.watermark_after == {"cursor": {"$datetime": "2024-02-01T00:00:00"}, "key": [5]}

    # A new record at the watermark's cursor value (a tie) and an update after it.
    local_api.state.records += [person(6, t2)]
    local_api.state.records[1] = person(2, t3, profile={"name": "renamed", "email": "u2@example.com"})
    local_api.state.requests.clear()
    second = run(config, "r2")
    reads = local_api.state.queries("/page")[1:]  # after the first page, read for the column types
    assert reads and all(query["updated_since"] == "2024-02-01T00:00:00Z" for query in reads)
    assert (second.counts.processed, second.counts.created, second.counts.updated) == (2, 1, 1)
    assert users(tmp_path / "t.db")[2]["name"] == "renamed" and 6 in users(tmp_path / "t.db")
    assert second.watermark_after == {"cursor": {"$datetime": "2024-03-01T00:00:00"}, "key": [2]}

    third = run(config, "r3")
    assert third.counts.processed == 0  # the inclusive filter returns record 2 again; it is not loaded twice


def test_full_sync_with_delete_missing_reads_every_page(local_api: LocalApi, tmp_path: Path) -> None:
    config = rest_config(local_api, tmp_path / "t.db", delete_missing=True)
    run(config, "r1")
    del local_api.state.records[3]  # user 4, on the second page
    result = run(config, "r2")
    assert result.counts.deleted == 1 and result.counts.unchanged == 4
    assert sorted(users(tmp_path / "t.db")) == [1, 2, 3, 5]


@pytest.mark.parametrize(
    "failure",
    [
        Reply(429, "slow down", {"Retry-After": "0"}),
        Reply(500, "boom"),
        Reply(503, "unavailable"),
        DROP,
    ],
    ids=["429", "500", "503", "dropped"],
)
def test_transient_failures_are_retried(local_api: LocalApi, tmp_path: Path, failure: Reply | str) -> None:
    local_api.state.script.extend([failure, failure])
    result = run(rest_config(local_api, tmp_path / "t.db"), "r1")
    assert result.status is RunStatus.COMPLETED, result.error
    assert len(users(tmp_path / "t.db")) == 5
    assert len(local_api.state.requests) >= 2 + 3  # the two failures were retried, then three pages read


def test_transient_failures_beyond_the_retries_fail_the_step_as_transient(local_api: LocalApi, tmp_path: Path) -> None:
    local_api.state.script.extend([Reply(500, "boom")] * 4)
    with pytest.raises(TransientConnectorError, match=r"HTTP 500 .* after 3 retries"):
        run(rest_config(local_api, tmp_path / "t.db"), "r1")


def test_a_retry_after_too_long_fails_saying_so(local_api: LocalApi, tmp_path: Path) -> None:
    local_api.state.script.append(Reply(429, "later", {"Retry-After": "3600"}))
    config = rest_config(local_api, tmp_path / "t.db", retries={"attempts": 3, "max_retry_after_s": 60})
    with pytest.raises(PermanentConnectorError, match=r"retry after 3600 s \(Retry-After\), more than 60 s"):
        run(config, "r1")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(200, "<html>maintenance</html>", {"Content-Type": "text/html"}), "is not JSON (text/html)"),
        (Reply(200, '{"data": {"items": [', {"Content-Type": "application/json"}), "is not JSON"),
        (Reply(200, json.dumps({"items": []})), "has no `data.items` (records); it holds: items"),
        (Reply(200, json.dumps({"data": {"items": {"id": 1}}})), "`data.items` is an object, not a list"),
        (Reply(200, json.dumps({"data": {"items": [1, 2]}})), "record 0 is a int, not a JSON object"),
        (Reply(404, "not found"), "HTTP 404"),
        (Reply(403, "no"), "HTTP 403 Forbidden: the credentials may not read this endpoint"),
    ],
    ids=["html", "malformed", "no-records-path", "not-a-list", "not-objects", "404", "403"],
)
def test_permanent_failures_name_the_sync_the_url_and_the_problem(
    local_api: LocalApi, tmp_path: Path, reply: Reply, expected: str
) -> None:
    local_api.state.script.append(reply)
    with pytest.raises(PermanentConnectorError) as caught:
        run(rest_config(local_api, tmp_path / "t.db"), "r1")
    message = str(caught.value)
    assert expected in message
    assert message.startswith(f"{local_api.url}/page: sync directory_users: GET page 1")


def test_an_unreachable_api_is_a_transient_failure(tmp_path: Path, local_api: LocalApi) -> None:
    config = rest_config(local_api, tmp_path / "t.db", url="http://127.0.0.1:9/users", retries={"attempts": 0})
    with pytest.raises(TransientConnectorError, match="connection failed"):
        run(config, "r1")


def test_a_query_key_never_shows_in_a_connection_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIR_SECRET", TOKEN)
    config = SyncConfig.model_validate(
        {
            "name": "directory_users",
            "source": {
                "kind": "rest",
                "url": "http://127.0.0.1:9/users",
                "auth": {"type": "query", "name": "api_key", "value": "${DIR_SECRET}"},
                "retries": {"attempts": 0},
            },
            "target": {"kind": "sql", "url": f"sqlite:///{tmp_path / 't.db'}", "table": "users", "key": ["id"]},
        }
    )
    with pytest.raises(TransientConnectorError) as caught:
        run(config, "r1")
    assert TOKEN not in str(caught.value) and "api_key" not in str(caught.value)


def test_check_reads_one_page_and_reports_a_refused_token(
    local_api: LocalApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_api.state.auth = ("bearer", TOKEN)
    monkeypatch.setenv("DIR_SECRET", TOKEN)
    config = rest_config(local_api, tmp_path / "t.db", auth={"type": "bearer", "token": "${DIR_SECRET}"})
    source, target = check_sync(config)
    assert source.ok, source.error
    assert source.endpoint == f"{local_api.url}/page"
    assert "read one page: 2 record(s) in `data.items`" in source.passed
    assert target.ok, target.error
    assert len(local_api.state.requests) == 1

    monkeypatch.setenv("DIR_SECRET", "wrong-token-value")
    source, _ = check_sync(config)
    assert not source.ok and source.error is not None
    assert "HTTP 401" in source.error and "wrong-token-value" not in source.error
