"""Secrets never leak, and identifiers are always quoted.

A real PostgreSQL role and a real MariaDB user with passwords given as ``${ENV}`` references run syncs
through Dagster, successfully and failing (PostgreSQL trusts 127.0.0.1 and ignores the password, so
the failing login is MariaDB's, with a wrong password that the server really refuses). Elasticsearch
sources do the same behind a proxy that demands basic auth. Then every place a value could land is
scanned for the password: the event log, run tags and config, every file under ``DAGSTER_HOME`` (compute
logs included) and the staging folder, the run ledger, ``_sync_records``, CSV and XLSX exports and the
error messages.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import openpyxl
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from dagster import DagsterInstance
from dagster._serdes import serialize_value
from elasticsearch import Elasticsearch, helpers

from sync_pipelines.cli import main
from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.sql import create_sql_engine
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.history import open_ledger
from sync_pipelines.history.export import export_csv, export_xlsx
from sync_pipelines.orchestration import execute_sync
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.support.databases import MARIADB_ADMIN_URL, PG_ADMIN_URL, Databases, make_databases
from sync_pipelines_tests.support.es import FaultProxy
from sync_pipelines_tests.support.hosts import seed_metrics
from sync_pipelines_tests.support.http_api import LocalApi

SECRET = "Leak-Canary-7f3a9c1e-pw"
WRONG = "Wrong-Canary-0b8d2e4f-pw"


@pytest.fixture(params=["postgresql", "mariadb"])
def account(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Databases]:
    """Databases reached as a fresh user whose password is ``${SYNC_LEAK_PW}``."""
    monkeypatch.setenv("SYNC_LEAK_PW", SECRET)
    monkeypatch.setenv("SYNC_LEAK_WRONG_PW", WRONG)
    backend = request.param
    gen = make_databases(backend, tmp_path)
    dbs = next(gen)
    user = f"sp_leak_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        PG_ADMIN_URL if backend == "postgresql" else MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT"
    )
    databases = [sa.make_url(u).database for u in (dbs.source_url, dbs.target_url)]
    with admin.connect() as conn:
        if backend == "postgresql":
            conn.execute(sa.text(f"CREATE ROLE {user} LOGIN PASSWORD '{SECRET}'"))
            for name in databases:
                conn.execute(sa.text(f"ALTER DATABASE {name} OWNER TO {user}"))
        else:
            conn.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{SECRET}'"))
            conn.execute(sa.text(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{SECRET}'"))
            for name in databases:
                conn.execute(sa.text(f"GRANT ALL ON `{name}`.* TO '{user}'@'%'"))
                conn.execute(sa.text(f"GRANT ALL ON `{name}`.* TO '{user}'@'localhost'"))

    def as_user(url: str) -> str:
        parsed = sa.make_url(url)
        return f"{parsed.drivername}://{user}:${{SYNC_LEAK_PW}}@{parsed.host}:{parsed.port}/{parsed.database}"

    try:
        yield Databases(backend, as_user(dbs.source_url), as_user(dbs.target_url))
    finally:
        for _ in gen:
            pass
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(sa.text(f"DROP ROLE IF EXISTS {user}"))
            else:
                conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'%'"))
                conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'localhost'"))
        admin.dispose()


def resolved(url: str) -> str:
    return url.replace("${SYNC_LEAK_PW}", SECRET)


def seed(dbs: Databases) -> None:
    engine = sa.create_engine(resolved(dbs.source_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(40), note VARCHAR(80))"))
        conn.execute(
            sa.text("INSERT INTO people VALUES (1, 'ann', 'ok'), (2, 'bob', 'ok'), (3, 'cy', 'ok')"),
        )
    engine.dispose()


def sync_data(dbs: Databases, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "people_sync",
        "source": {"kind": "sql", "url": dbs.source_url, "table": "people"},
        "target": {"kind": "sql", "url": dbs.target_url, "table": "wh_people", "key": ["id"]},
        "mapping": {"id": "id", "name": {"type": "string"}, "note": {"type": "integer"}},
        "max_failure_ratio": 1.0,
        "retry": {"max_retries": 0},
    }
    data.update(overrides)
    return data


def execute(folder: Path, data: dict[str, Any]) -> Any:
    folder.mkdir(parents=True)
    (folder / "people_sync.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return execute_sync("people_sync", instance=DagsterInstance.get(), config_directory=folder)


def scan_run(instance: DagsterInstance, run_id: str) -> list[str]:
    """Everything Dagster keeps about one run, as text."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    texts = [serialize_value(run), repr(run.tags), repr(run.run_config)]
    texts += [serialize_value(entry) for entry in instance.all_logs(run_id)]
    return texts


def scan_files(*roots: Path) -> list[Path]:
    """Files under ``roots`` whose bytes contain a password."""
    found = []
    for root in roots:
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file():
                data = path.read_bytes()
                if SECRET.encode() in data or WRONG.encode() in data:
                    found.append(path)
    return found


def assert_clean(texts: list[str]) -> None:
    for text in texts:
        assert SECRET not in text and WRONG not in text, text[:2000]


def test_secret_never_leaks_after_successful_partial_and_failed_runs(account: Databases, tmp_path: Path) -> None:
    seed(account)
    instance = DagsterInstance.get()
    good = execute(tmp_path / "good", sync_data(account))
    # note 'ok' is no integer: every record fails, with its value in the error, and the run is partial
    assert good.status in (RunStatus.PARTIAL, RunStatus.FAILED)
    wrong_target = {
        **sync_data(account)["target"],
        "url": account.target_url.replace("SYNC_LEAK_PW", "SYNC_LEAK_WRONG_PW"),
    }
    missing_table = {**sync_data(account)["source"], "table": "no_such_table"}
    ok = execute(tmp_path / "ok", sync_data(account, mapping={"id": "id", "name": {"type": "string"}}))
    assert ok.status is RunStatus.COMPLETED
    runs = [good, ok]
    if account.backend == "mariadb":
        refused = execute(tmp_path / "wrong", sync_data(account, target=wrong_target))
        assert refused.status is RunStatus.FAILED
        assert "Access denied" in (refused.error or "") and "127.0.0.1:3306" in (refused.error or "")
        runs.append(refused)
    missing = execute(tmp_path / "missing", sync_data(account, source=missing_table))
    assert missing.status is RunStatus.FAILED and "no_such_table" in (missing.error or "")
    runs.append(missing)

    texts: list[str] = []
    for report in runs:
        texts += [report.error or "", repr(report.to_json())]
        texts += scan_run(instance, report.run_id)
    assert_clean(texts)
    assert scan_files(Path(os.environ["DAGSTER_HOME"]), Path(os.environ["SYNC_PIPELINES_STAGING_DIR"])) == []

    config = SyncConfig.model_validate(sync_data(account))
    with open_ledger(config) as ledger:
        entry = ledger.get(ok.run_id)
        assert entry is not None and entry.status is RunStatus.COMPLETED
        failed_entry = ledger.get(missing.run_id)
        assert failed_entry is not None and failed_entry.status is RunStatus.FAILED
        csv_path, xlsx_path = tmp_path / "out.csv", tmp_path / "out.xlsx"
        assert export_csv(csv_path, ledger, ledger.get(good.run_id)) == 3  # type: ignore[arg-type]
        export_xlsx(xlsx_path, ledger, failed_entry)
    cells = [
        str(cell)
        for sheet in openpyxl.load_workbook(xlsx_path, read_only=True).worksheets
        for row in sheet.iter_rows(values_only=True)
        for cell in row
    ]
    assert_clean([csv_path.read_text(encoding="utf-8"), *cells])
    engine = sa.create_engine(resolved(account.target_url))
    with engine.connect() as conn:
        for table in ("_sync_runs", "_sync_records", "_sync_record_sets", "_sync_state"):
            assert_clean([repr(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))])
    engine.dispose()


HOSTILE_TABLE = 'wh"; DROP TABLE canary; --'
HOSTILE_COLUMNS = {"id": "id", "na me'; DELETE FROM canary; --": {"source": 'we"ird col'}, "Mixed Case": "mixed"}


def test_hostile_table_and_column_names_are_quoted(dbs: Databases) -> None:
    for url in (dbs.source_url, dbs.target_url):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE canary (id INTEGER)"))
            conn.execute(sa.text("INSERT INTO canary VALUES (1)"))
        engine.dispose()
    metadata = sa.MetaData()
    source = sa.Table(
        "src'; DROP TABLE canary; --",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column('we"ird col', sa.String(40)),
        sa.Column("mixed", sa.String(40)),
    )
    engine = dbs.source()
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(source.insert(), [{"id": i, 'we"ird col': f"v{i}'; --", "mixed": "m"} for i in range(1, 6)])
    engine.dispose()
    data: dict[str, Any] = {
        "name": "hostile",
        "source": {"kind": "sql", "url": dbs.source_url, "table": source.name},
        "target": {"kind": "sql", "url": dbs.target_url, "table": HOSTILE_TABLE, "key": ["id"]},
        "mapping": HOSTILE_COLUMNS,
        "filter": [{"column": 'we"ird col', "op": "ne", "value": "x' OR '1'='1"}],
    }
    with pytest.raises(ValueError, match="contains a backtick"):
        # One rule for every backend: a backtick cannot be quoted through every MariaDB/MySQL driver.
        SyncConfig.model_validate({**data, "mapping": {**HOSTILE_COLUMNS, "b`q": "mixed"}})
    config = SyncConfig.model_validate(data)
    assert run_sync(config, RunOptions(run_id="hostile")).status is RunStatus.COMPLETED
    for url in (dbs.source_url, dbs.target_url):
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM canary")).scalar() == 1
        engine.dispose()
    engine = dbs.target()
    target = sa.Table(HOSTILE_TABLE, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(target).order_by(target.c.id)).mappings().all()
    engine.dispose()
    name = next(k for k in config.mapping if k.startswith("na"))
    assert [(r["id"], r[name], r["Mixed Case"]) for r in rows] == [(i, f"v{i}'; --", "m") for i in range(1, 6)]


# Every URL delimiter, a literal percent escape, spaces, a Latin-1 letter and characters beyond Latin-1.
# Each piece between delimiters is distinctive, so an echoed fragment is found too. On MariaDB the
# password reaches PyMySQL as UTF-8 bytes (its own default for a str would be Latin-1).
HOSTILE_PASSWORD = "Canary1@Hostile2:Secret3/Part4?Bits5#Hash6%2FPct7 Space8 ümlaut9-密码"
HOSTILE = {"postgresql": HOSTILE_PASSWORD, "mariadb": HOSTILE_PASSWORD}


def leak_forms(secret: str) -> list[str]:
    """The password as is, URL-encoded and JSON-escaped, and every piece of it of 5 characters or more."""
    forms = {secret, quote(secret, safe=""), quote(secret, safe=" +"), quote_plus(secret), json.dumps(secret)[1:-1]}
    forms.update(piece for piece in re.split(r"[@:/?#% ]", secret) if len(piece) >= 5)
    return sorted(forms)


@pytest.fixture(params=sorted(HOSTILE))
def hostile(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Databases]:
    """Databases reached as a fresh user whose password holds every URL delimiter, given as ``${SYNC_HOSTILE_PW}``."""
    backend, secret = request.param, HOSTILE[request.param]
    monkeypatch.setenv("SYNC_HOSTILE_PW", secret)
    gen = make_databases(backend, tmp_path)
    dbs = next(gen)
    user = f"sp_hostile_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        PG_ADMIN_URL if backend == "postgresql" else MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT"
    )
    databases = [sa.make_url(u).database for u in (dbs.source_url, dbs.target_url)]
    if backend == "postgresql":
        statements = [f"CREATE ROLE {user} LOGIN PASSWORD '{secret}'"]
        statements += [f"ALTER DATABASE {name} OWNER TO {user}" for name in databases]
    else:
        statements = [f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{secret}'" for host in ("%", "localhost")]
        statements += [f"GRANT ALL ON `{n}`.* TO '{user}'@'{h}'" for n in databases for h in ("%", "localhost")]
    raw = admin.raw_connection()  # no bind-parameter parsing: the password holds ':' and '%'
    try:
        cursor = raw.cursor()
        for statement in statements:
            cursor.execute(statement)
        raw.commit()
    finally:
        raw.close()

    def as_user(url: str) -> str:
        parsed = sa.make_url(url)
        return f"{parsed.drivername}://{user}:${{SYNC_HOSTILE_PW}}@{parsed.host}:{parsed.port}/{parsed.database}"

    try:
        yield Databases(backend, as_user(dbs.source_url), as_user(dbs.target_url))
    finally:
        for _ in gen:
            pass
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(sa.text(f"DROP ROLE IF EXISTS {user}"))
            else:
                for host in ("%", "localhost"):
                    conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
        admin.dispose()


def write_syncs(folder: Path, dbs: Databases) -> None:
    """``people_sync`` completes, ``people_missing`` reads a missing table, ``people_refused`` logs in wrongly."""
    folder.mkdir(parents=True)
    ok = sync_data(dbs, mapping={"id": "id", "name": {"type": "string"}})
    missing = {**ok, "name": "people_missing", "source": {**ok["source"], "table": "no_such_table"}}
    wrong_url = dbs.target_url.replace("SYNC_HOSTILE_PW", "SYNC_HOSTILE_WRONG_PW")
    refused = {**ok, "name": "people_refused", "target": {**ok["target"], "url": wrong_url}}
    for data in (ok, missing, refused):
        (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def read_back(base: list[str], runs: dict[str, str], failed: str, completed: str, out: Path) -> dict[str, str]:
    """Every CLI view of ``runs`` (by sync name), keyed by command: ``check --all -v``, ``history`` of all
    syncs and of ``failed``, ``show`` of each run, and ``export`` of ``failed`` (xlsx) and ``completed`` (csv)
    with the exported files' contents."""
    views = {"check": cli(*base, "check", "--all", "-v")[1], "history": cli(*base, "history")[1]}
    views[f"history {failed}"] = cli(*base, "history", failed)[1]
    views.update({f"show {name}": cli(*base, "show", run_id)[1] for name, run_id in runs.items()})
    xlsx, csv = out / f"{failed}.xlsx", out / f"{completed}.csv"
    views["export xlsx"] = cli(*base, "export", runs[failed], "--format", "xlsx", "-o", str(xlsx))[1]
    views["export csv"] = cli(*base, "export", runs[completed], "--format", "csv", "-o", str(csv))[1]
    views["csv"] = csv.read_text(encoding="utf-8")
    views["xlsx"] = "\n".join(
        str(cell)
        for sheet in openpyxl.load_workbook(xlsx, read_only=True).worksheets
        for row in sheet.iter_rows(values_only=True)
        for cell in row
    )
    return views


def assert_never_leaks(forms: list[str], texts: list[str], run_ids: list[str], ledger: sa.Engine) -> None:
    """No form of the password in ``texts``, in anything Dagster keeps about the runs, in the ``_sync_*``
    tables behind ``ledger``, or in any file under ``DAGSTER_HOME`` (compute logs included) and the staging folder."""
    instance = DagsterInstance.get()
    texts = list(texts)
    for run_id in run_ids:
        texts += scan_run(instance, run_id)
    with ledger.connect() as conn:
        tables = [name for name in sa.inspect(conn).get_table_names() if name.startswith("_sync_")]
        assert "_sync_runs" in tables, tables
        for table in tables:
            texts += [repr(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    for text in texts:
        assert not [form for form in forms if form in text], text[:2000]
    home = Path(os.environ["DAGSTER_HOME"])
    for run_id in run_ids:  # the scan below reads each run's captured stdout/stderr
        assert list((home / "storage" / run_id / "compute_logs").glob("*.err")), run_id
    for root in (home, Path(os.environ["SYNC_PIPELINES_STAGING_DIR"])):
        for path in (p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            assert not [form for form in forms if form.encode() in data], path


def run_json(base: list[str], name: str, *args: str) -> tuple[int, str, str]:
    """``run NAME --json``: exit code, output and the run id."""
    code, output = cli(*base, "run", name, "--json", *args)
    return code, output, json.loads(next(line for line in output.splitlines() if line.startswith("{")))["run_id"]


def test_a_password_with_url_delimiters_connects_and_never_leaks(
    hostile: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = os.environ["SYNC_HOSTILE_PW"]
    monkeypatch.setenv("SYNC_HOSTILE_WRONG_PW", secret[::-1])
    forms = leak_forms(secret) + leak_forms(secret[::-1])
    engine, _ = create_sql_engine(hostile.source_url, where="seed")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(40), note VARCHAR(80))"))
        conn.execute(sa.text("INSERT INTO people VALUES (1, 'ann', 'ok'), (2, 'bob', 'ok')"))
    engine.dispose()
    folder = tmp_path / "syncs"
    write_syncs(folder, hostile)
    base = ["--config-dir", str(folder)]

    outputs: list[str] = []
    runs: dict[str, str] = {}
    for name in ("people_sync", "people_missing", "people_refused"):
        code, output, runs[name] = run_json(base, name)
        outputs.append(output)
        # PostgreSQL trusts 127.0.0.1: only MariaDB refuses the wrong password.
        refused = name == "people_refused" and hostile.backend == "mariadb"
        assert code == (1 if name == "people_missing" or refused else 0), output
    assert "no_such_table" in outputs[1]
    if hostile.backend == "mariadb":
        assert "Access denied" in outputs[2]
    views = read_back(base, runs, "people_missing", "people_sync", tmp_path)
    assert runs["people_missing"] in views["history people_missing"], views
    assert f"run {runs['people_sync']}" in views["show people_sync"]
    assert f"run {runs['people_missing']}" in views["show people_missing"]
    # The refused run could not reach its ledger: `show` names that database (on MariaDB) instead.
    refused_view = views["show people_refused"]
    assert ("Access denied" if hostile.backend == "mariadb" else f"run {runs['people_refused']}") in refused_view

    engine, _ = create_sql_engine(hostile.target_url, where="scan")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM wh_people")).scalar() == 2
        assert_never_leaks(forms, outputs + list(views.values()), list(runs.values()), engine)
    finally:
        engine.dispose()


ES_USER = "es-reader"


def es_sync(name: str, endpoint: str, index: str, target: str, **source: Any) -> dict[str, Any]:
    """A raw-documents sync from ``index`` into the SQLite file ``target``."""
    return {
        "name": name,
        "source": {"kind": "elasticsearch", "endpoint": endpoint, "index": index, **source},
        "target": {"kind": "sql", "url": target, "table": "es_docs", "key": ["doc_id"]},
        "mapping": {"doc_id": "_id", "code": "code"},
        "retry": {"max_retries": 0},
    }


def test_an_elasticsearch_password_with_url_delimiters_authenticates_and_never_leaks(
    fault_proxy: FaultProxy, es: Elasticsearch, index_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster sits behind a proxy that demands basic auth with the hostile password, as a secured cluster."""
    monkeypatch.setenv("SYNC_HOSTILE_PW", HOSTILE_PASSWORD)
    monkeypatch.setenv("SYNC_HOSTILE_WRONG_PW", HOSTILE_PASSWORD[::-1])
    fault_proxy.credentials = (ES_USER, HOSTILE_PASSWORD)
    forms = leak_forms(HOSTILE_PASSWORD) + leak_forms(HOSTILE_PASSWORD[::-1])
    index = f"{index_prefix}-docs"
    helpers.bulk(es, ({"_index": index, "_id": k, "_source": {"code": k.upper()}} for k in "abc"), refresh=True)
    seed_metrics(es, index_prefix)
    port = fault_proxy.url.rsplit(":", 1)[1]
    in_url = f"http://{ES_USER}:${{SYNC_HOSTILE_PW}}@127.0.0.1:{port}"
    wrong = f"http://{ES_USER}:${{SYNC_HOSTILE_WRONG_PW}}@127.0.0.1:{port}"
    target = f"sqlite:///{tmp_path / 'warehouse.db'}"
    syncs = [
        es_sync("es_docs", in_url, index, target),
        es_sync("es_docs_missing", in_url, f"{index_prefix}-absent", target),
        es_sync("es_docs_refused", wrong, index, target),
        es_sync("es_docs_fields", fault_proxy.url, index, target, username=ES_USER, password="${SYNC_HOSTILE_PW}"),
        {
            "name": "host_metrics",
            "source": {"kind": "elasticsearch_hosts", "endpoint": in_url, "index": f"{index_prefix}-2*"},
            "target": {"kind": "cmdb", "url": f"sqlite:///{tmp_path / 'cmdb.db'}"},
        },
    ]
    folder = tmp_path / "syncs"
    folder.mkdir()
    for data in syncs:
        (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    base = ["--config-dir", str(folder)]

    outputs: list[str] = []
    runs: dict[str, str] = {}
    for name, args, expected in (
        ("es_docs", (), 0),
        ("es_docs_missing", (), 1),
        ("es_docs_refused", (), 1),
        ("es_docs_fields", (), 0),
        ("host_metrics", ("--full-sync",), 0),
    ):
        code, output, runs[name] = run_json(base, name, *args)
        outputs.append(output)
        assert code == expected, output
    assert "index_not_found" in outputs[1] or "no such index" in outputs[1], outputs[1]
    # The user name is not asserted: redaction scrubs any piece of a secret that earlier tests resolved.
    assert "HTTP 401" in outputs[2] and "unable to authenticate user [" in outputs[2], outputs[2]
    assert json.loads(outputs[0].splitlines()[-1])["counts"]["created"] == 3
    assert json.loads(outputs[4].splitlines()[-1])["status"] == "completed"
    assert fault_proxy.authenticated > 0 and fault_proxy.refused > 0
    host_runs = {name: runs.pop(name) for name in ("host_metrics",)}
    views = read_back(base, runs, "es_docs_refused", "es_docs", tmp_path)
    views["show host_metrics"] = cli(*base, "show", host_runs["host_metrics"])[1]
    assert "es_docs_refused" in views["history"] and "host_metrics" in views["history"], views["history"]
    assert "HTTP 401" in views["show es_docs_refused"], views["show es_docs_refused"]
    assert f"http://127.0.0.1:{port}" in views["check"] and "@127.0.0.1" not in views["check"], views["check"]
    assert "8 of 10 endpoint(s) OK" in views["check"]  # the missing index and the refused login

    for ledger_url in (target, f"sqlite:///{tmp_path / 'cmdb.db'}"):
        engine = sa.create_engine(ledger_url)
        try:
            run_ids = list(runs.values()) if ledger_url == target else list(host_runs.values())
            assert_never_leaks(forms, outputs + list(views.values()), run_ids, engine)
        finally:
            engine.dispose()


REST_TOKEN = "Rest-Canary-5e1d7a93-token"


def rest_sync(name: str, url: str, target: str, auth: dict[str, str]) -> dict[str, Any]:
    """A sync of the local API's users into the SQLite file ``target``."""
    return {
        "name": name,
        "source": {
            "kind": "rest",
            "url": url,
            "records": "data.items",
            "auth": auth,
            "paginator": {"type": "page_number", "size": 2},
            "retries": {"attempts": 0},
        },
        "target": {"kind": "sql", "url": target, "table": f"{name}_users", "key": ["user_id"]},
        "mapping": {"user_id": {"source": "id", "type": "integer"}, "email": "profile.email"},
        "retry": {"max_retries": 0},
    }


def test_api_tokens_keys_and_passwords_of_rest_sources_never_leak(
    local_api: LocalApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bearer, basic (the hostile password), header and query auth against the local API, one refused token."""
    monkeypatch.setenv("SYNC_API_TOKEN", REST_TOKEN)
    monkeypatch.setenv("SYNC_API_WRONG_TOKEN", REST_TOKEN[::-1])
    monkeypatch.setenv("SYNC_HOSTILE_PW", HOSTILE_PASSWORD)
    forms = leak_forms(REST_TOKEN) + leak_forms(REST_TOKEN[::-1]) + leak_forms(HOSTILE_PASSWORD)
    target = f"sqlite:///{tmp_path / 'app.db'}"
    url = f"{local_api.url}/page"
    syncs = {
        "api_bearer": {"type": "bearer", "token": "${SYNC_API_TOKEN}"},
        "api_basic": {"type": "basic", "username": "reader", "password": "${SYNC_HOSTILE_PW}"},
        "api_header": {"type": "header", "name": "X-API-Key", "value": "${SYNC_API_TOKEN}"},
        "api_query": {"type": "query", "name": "api_key", "value": "${SYNC_HOSTILE_PW}"},
        "api_refused": {"type": "bearer", "token": "${SYNC_API_WRONG_TOKEN}"},
    }
    folder = tmp_path / "syncs"
    folder.mkdir()
    for name, auth in syncs.items():
        data = rest_sync(name, url, target, auth)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    base = ["--config-dir", str(folder)]
    servers = {
        "api_bearer": ("bearer", REST_TOKEN),
        "api_basic": ("basic", "reader", HOSTILE_PASSWORD),
        "api_header": ("header", "X-API-Key", REST_TOKEN),
        "api_query": ("query", "api_key", HOSTILE_PASSWORD),
        "api_refused": ("bearer", REST_TOKEN),
    }
    outputs: list[str] = []
    runs: dict[str, str] = {}
    for name in syncs:
        local_api.state.auth = servers[name]
        code, output, runs[name] = run_json(base, name)
        outputs.append(output)
        assert code == (1 if name == "api_refused" else 0), output
    assert "HTTP 401" in outputs[-1] and f"{url}: sync api_refused" in outputs[-1], outputs[-1]
    assert json.loads(outputs[0].splitlines()[-1])["counts"]["created"] == 5
    local_api.state.auth = servers["api_bearer"]  # `check --all` below: only the bearer syncs authenticate
    views = read_back(base, runs, "api_refused", "api_bearer", tmp_path)
    assert "HTTP 401" in views["show api_refused"], views["show api_refused"]
    assert url in views["check"] and "api_key" not in views["check"], views["check"]
    engine = sa.create_engine(target)
    try:
        assert_never_leaks(forms, outputs + list(views.values()), list(runs.values()), engine)
    finally:
        engine.dispose()
