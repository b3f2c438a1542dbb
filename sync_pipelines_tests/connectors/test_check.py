"""The connection test (`sync-pipelines check`) against live and broken endpoints on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sync_pipelines.cli import main
from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.check import EndpointCheck, EndpointRole
from sync_pipelines.kinds import check_sync
from sync_pipelines_tests.factories import write_config
from sync_pipelines_tests.support.databases import MARIADB_ADMIN_URL, PG_ADMIN_URL, Databases, make_databases


def make_orders(engine_url: str, *, primary_key: bool = True, qty_type: Any = sa.Integer) -> None:
    engine = sa.create_engine(engine_url)
    metadata = sa.MetaData()
    table = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=primary_key, autoincrement=False, nullable=False),
        sa.Column("name", sa.String(50)),
        sa.Column("qty", qty_type),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "name": "a", "qty": 2}, {"id": 2, "name": "b", "qty": 3}])
    engine.dispose()


def config(source_url: str, target_url: str, **overrides: Any) -> SyncConfig:
    data: dict[str, Any] = {
        "name": "orders_sync",
        "source": {"kind": "sql", "url": source_url, "table": "orders"},
        "target": {"kind": "sql", "url": target_url, "table": "orders_copy", "key": ["id"]},
        "mapping": {"id": {"type": "integer"}, "name": {"type": "string"}, "qty": {"type": "integer"}},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return SyncConfig.model_validate(data)


def by_role(results: list[EndpointCheck]) -> dict[EndpointRole, EndpointCheck]:
    assert [r.role for r in results] == [EndpointRole.SOURCE, EndpointRole.TARGET]
    return {r.role: r for r in results}


def tables_of(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_live_endpoints_pass_and_leave_nothing_behind(dbs: Databases) -> None:
    make_orders(dbs.source_url)
    results = by_role(check_sync(config(dbs.source_url, dbs.target_url)))
    source, target = results[EndpointRole.SOURCE], results[EndpointRole.TARGET]
    assert source.ok and source.error is None, source.error
    assert source.passed == [
        "connected",
        "table 'orders' has the mapped columns",
        "column types can be cast",
        "read one row",
    ]
    assert target.ok, target.error
    assert "table 'orders_copy' will be created (key as primary key)" in target.passed
    assert source.latency_ms > 0 and target.latency_ms > 0
    # The create probe is dropped: the target database is as empty as before.
    assert tables_of(dbs.target_url) == set()

    # An existing target with a primary key: columns, key and a rolled-back test write are verified.
    target_cfg = config(dbs.source_url, dbs.target_url, target={"table": "orders"})
    make_orders(dbs.target_url)
    engine = sa.create_engine(dbs.target_url)
    with engine.begin() as conn:  # bookkeeping table from an earlier run: the probe row is rolled back
        conn.execute(
            sa.text(
                "CREATE TABLE _sync_state (sync VARCHAR(128) PRIMARY KEY, watermark TEXT, "
                "version BIGINT NOT NULL, last_run_id VARCHAR(64), last_batch INTEGER NOT NULL, "
                "lease_holder VARCHAR(64), updated_at TIMESTAMP NULL)"
            )
        )
    engine.dispose()
    target = by_role(check_sync(target_cfg))[EndpointRole.TARGET]
    assert target.ok, target.error
    assert target.passed[-3:] == ["mapped columns exist with fitting types", "key is unique", "test write rolled back"]
    engine = sa.create_engine(dbs.target_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM _sync_state")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one() == 2
    engine.dispose()
    assert tables_of(dbs.target_url) == {"orders", "_sync_state"}


def test_query_source_and_read_only_sqlite_target(sqlite_dbs: Databases, tmp_path: Path) -> None:
    make_orders(sqlite_dbs.source_url)
    make_orders(sqlite_dbs.target_url)
    query = {"table": None, "query": "SELECT id, name, qty FROM orders WHERE qty > 0"}
    read_only = f"sqlite:///file:{tmp_path / 'target.db'}?mode=ro&uri=true"
    results = by_role(check_sync(config(sqlite_dbs.source_url, read_only, source=query, target={"table": "orders"})))
    source, target = results[EndpointRole.SOURCE], results[EndpointRole.TARGET]
    assert source.ok, source.error
    assert source.passed[1] == "query has the mapped columns"
    assert not target.ok
    assert target.passed[-1] == "key is unique"
    assert target.error is not None and "attempt to write a readonly database" in target.error


@pytest.mark.slow
def test_missing_table(dbs: Databases) -> None:
    results = by_role(check_sync(config(dbs.source_url, dbs.target_url, target={"create": False})))
    source, target = results[EndpointRole.SOURCE], results[EndpointRole.TARGET]
    assert not source.ok
    # A SQLite file that does not exist is reported as such, and not created by the check.
    missing = "source database file" if dbs.backend == "sqlite" else "source table 'orders'"
    assert source.error is not None and f"{missing} " in source.error and "does not exist" in source.error
    assert dbs.backend != "sqlite" or not Path(sa.make_url(dbs.source_url).database or "").exists()
    assert not target.ok
    assert target.error == "target table 'orders_copy' does not exist and target.create is false"


@pytest.mark.slow
def test_missing_and_uncastable_columns(dbs: Databases) -> None:
    make_orders(dbs.source_url)
    missing = config(dbs.source_url, dbs.target_url, mapping={"id": {"type": "integer"}, "total": {"type": "float"}})
    source = by_role(check_sync(missing))[EndpointRole.SOURCE]
    assert not source.ok
    assert source.error is not None and "source has no column(s) total" in source.error

    uncastable = config(dbs.source_url, dbs.target_url, mapping={"id": {"type": "integer"}, "qty": {"type": "date"}})
    source = by_role(check_sync(uncastable))[EndpointRole.SOURCE]
    assert not source.ok
    assert source.error == ("source column 'qty' is integer, which cannot be cast to date (mapping.qty.type)")

    # The target table lacks a mapped column.
    make_orders(dbs.target_url)
    extra = config(
        dbs.source_url,
        dbs.target_url,
        target={"table": "orders"},
        mapping={"id": {"type": "integer"}, "label": {"source": "name", "type": "string"}},
    )
    target = by_role(check_sync(extra))[EndpointRole.TARGET]
    assert not target.ok
    assert target.error == "target table 'orders' has no column(s) label"

    # A target column whose type cannot store the declared type.
    engine = sa.create_engine(dbs.target_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE dated (id INTEGER PRIMARY KEY, qty DATE)"))
    engine.dispose()
    dated = config(dbs.source_url, dbs.target_url, target={"table": "dated"})
    target = by_role(check_sync(dated))[EndpointRole.TARGET]
    assert not target.ok
    assert target.error is not None
    assert target.error.startswith("target table 'dated' has no column(s) name; target column 'qty' is date (")
    assert target.error.endswith("which cannot store integer (mapping.qty.type)")


@pytest.mark.slow
def test_target_without_unique_key(dbs: Databases) -> None:
    make_orders(dbs.source_url)
    make_orders(dbs.target_url, primary_key=False)
    target = by_role(check_sync(config(dbs.source_url, dbs.target_url, target={"table": "orders"})))[
        EndpointRole.TARGET
    ]
    assert not target.ok
    assert target.error is not None
    assert target.error.startswith("target key (id) is not the primary key or a unique index of table 'orders'")

    # A unique index on the key is enough.
    engine = sa.create_engine(dbs.target_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE UNIQUE INDEX orders_id_unique ON orders (id)"))
    engine.dispose()
    target = by_role(check_sync(config(dbs.source_url, dbs.target_url, target={"table": "orders"})))[
        EndpointRole.TARGET
    ]
    assert target.ok, target.error


@pytest.mark.slow
def test_unreachable_endpoint(dbs: Databases, tmp_path: Path) -> None:
    make_orders(dbs.source_url)
    if dbs.backend == "sqlite":
        broken = f"sqlite:///{tmp_path / 'no' / 'such' / 'folder' / 'target.db'}"
        expected = "unable to open database file"
    else:
        broken = sa.make_url(dbs.target_url).set(port=closed_port()).render_as_string(hide_password=False)
        expected = "connection refused" if dbs.backend == "postgresql" else "can't connect"
    results = by_role(check_sync(config(dbs.source_url, broken)))
    assert results[EndpointRole.SOURCE].ok
    target = results[EndpointRole.TARGET]
    assert not target.ok
    assert target.error is not None and expected in target.error.lower()
    assert target.passed == []


# --------------------------------------------------------------------------- accounts on the servers


@pytest.fixture(params=["postgresql", "mariadb"])
def server_dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """A fresh source and target database on each server backend (SQLite has no accounts)."""
    yield from make_databases(request.param, tmp_path)


@pytest.fixture
def account(server_dbs: Databases) -> Iterator[dict[str, str]]:
    """A real login with a password on the server of ``server_dbs``, without privileges."""
    dbs = server_dbs
    user, password = f"sp_check_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:12]}"
    admin_url = PG_ADMIN_URL if dbs.backend == "postgresql" else MARIADB_ADMIN_URL
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if dbs.backend == "postgresql":
            conn.execute(sa.text(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'"))
        else:
            conn.execute(sa.text(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'"))
    try:
        yield {"user": user, "password": password}
    finally:
        with admin.connect() as conn:
            if dbs.backend == "postgresql":
                for url in (dbs.source_url, dbs.target_url):
                    database = sa.make_url(url).database
                    db_admin = sa.create_engine(sa.make_url(admin_url).set(database=database))
                    with db_admin.begin() as db_conn:
                        db_conn.execute(sa.text(f"DROP OWNED BY {user}"))
                    db_admin.dispose()
                conn.execute(sa.text(f"DROP ROLE IF EXISTS {user}"))
            else:
                conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'"))
        admin.dispose()


def as_user(url: str, user: str, password: str) -> str:
    """``url`` logging in as ``user``; ``password`` is written as is (it may be a ``${VAR}`` reference)."""
    rendered = sa.make_url(url).set(username=user, password="PASSWORD").render_as_string(hide_password=False)
    return rendered.replace(":PASSWORD@", f":{password}@")


def grant(dbs: Databases, url: str, user: str, privileges: str) -> None:
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    database = sa.make_url(url).database
    with admin.connect() as conn:
        if dbs.backend == "postgresql":
            conn.execute(sa.text(f"GRANT {privileges} ON ALL TABLES IN SCHEMA public TO {user}"))
        else:
            conn.execute(sa.text(f"GRANT {privileges} ON `{database}`.* TO '{user}'@'127.0.0.1'"))
    admin.dispose()


@pytest.mark.slow
def test_wrong_credentials_and_read_only_account(
    server_dbs: Databases, account: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dbs = server_dbs
    user, password = account["user"], account["password"]
    make_orders(dbs.source_url)
    make_orders(dbs.target_url)
    grant(dbs, dbs.source_url, user, "SELECT")
    grant(dbs, dbs.target_url, user, "SELECT")
    monkeypatch.setenv("SP_CHECK_PASSWORD", password)

    # The right password, through a ${VAR} reference: the source reads; the target refuses the test write.
    source_url = as_user(dbs.source_url, user, "${SP_CHECK_PASSWORD}")
    target_url = as_user(dbs.target_url, user, "${SP_CHECK_PASSWORD}")
    results = by_role(check_sync(config(source_url, target_url, target={"table": "orders"})))
    assert results[EndpointRole.SOURCE].ok, results[EndpointRole.SOURCE].error
    target = results[EndpointRole.TARGET]
    assert not target.ok
    assert target.passed[-1] == "key is unique"  # everything up to the test write passed
    denied = "permission denied for table orders" if dbs.backend == "postgresql" else "insert command denied"
    assert target.error is not None and denied in target.error.lower()
    assert (
        password not in target.error
        and target.endpoint == f"{target.endpoint.split('://')[0]}://{user}:***@" + (target.endpoint.split("@", 1)[1])
    )

    # Wrong credentials. PostgreSQL here trusts local connections (no password check), so its
    # authentication failure is an unknown login; MariaDB checks the password itself.
    wrong = "wrong-" + password
    if dbs.backend == "postgresql":
        bad_url, expected = as_user(dbs.source_url, user + "_nobody", wrong), "does not exist"
    else:
        bad_url, expected = as_user(dbs.source_url, user, wrong), "access denied"
    source = by_role(check_sync(config(bad_url, target_url)))[EndpointRole.SOURCE]
    assert not source.ok
    assert source.error is not None and expected in source.error.lower()
    assert wrong not in source.error and wrong not in source.endpoint

    # The CLI prints neither password.
    folder = tmp_path / "syncs"
    write_config(folder, config(source_url, target_url, target={"table": "orders"}))
    write_config(folder, config(bad_url, target_url, name="bad_login"))
    result = CliRunner().invoke(main, ["--config-dir", str(folder), "check", "--all"])
    assert result.exit_code == 1
    assert "0 of 4" not in result.output and "1 of 4 endpoint(s) OK" in result.output
    assert password not in result.output and wrong not in result.output


def test_cli_check_prints_each_endpoint_and_fails_when_any_fails(sqlite_dbs: Databases, tmp_path: Path) -> None:
    make_orders(sqlite_dbs.source_url)
    folder = tmp_path / "syncs"
    write_config(folder, config(sqlite_dbs.source_url, sqlite_dbs.target_url))
    broken = config(sqlite_dbs.source_url, sqlite_dbs.target_url, name="broken_sync", source={"table": "nope"})
    write_config(folder, broken)
    runner = CliRunner()

    ok = runner.invoke(main, ["--config-dir", str(folder), "check", "orders_sync", "-v"])
    assert ok.exit_code == 0, ok.output
    lines = ok.output.splitlines()
    assert lines[0].split()[:3] == ["orders_sync", "source", "OK"]
    assert lines[2].split()[:3] == ["orders_sync", "target", "OK"]
    assert lines[-1] == "2 of 2 endpoint(s) OK"

    everything = runner.invoke(main, ["--config-dir", str(folder), "check", "--all"])
    assert everything.exit_code == 1
    assert "broken_sync              source FAILED" in everything.output
    assert "error: source table 'nope' does not exist" in everything.output
    assert everything.output.splitlines()[-1] == "3 of 4 endpoint(s) OK"

    unknown = runner.invoke(main, ["--config-dir", str(folder), "check", "nope"])
    assert unknown.exit_code == 2
    assert "unknown sync 'nope'" in unknown.output
    neither = runner.invoke(main, ["--config-dir", str(folder), "check"])
    assert neither.exit_code == 2
