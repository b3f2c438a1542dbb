"""Fresh databases on the real SQLite, PostgreSQL and MariaDB servers of this machine.

PostgreSQL (127.0.0.1:5432, trust auth) and MariaDB (127.0.0.1:3306, root without password) must be
running (``scripts/ensure-services`` starts them); a test that cannot reach them fails, never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from sync_pipelines_tests.support.invariants import counts_that_do_not_add_up

PG_ADMIN_URL = os.environ.get("SYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIADB_ADMIN_URL = os.environ.get("SYNC_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")
BACKENDS = ("sqlite", "postgresql", "mariadb")


@dataclass
class Databases:
    """A fresh source and target database on one backend."""

    backend: str
    source_url: str
    target_url: str

    def source(self) -> sa.Engine:
        return sa.create_engine(self.source_url)

    def target(self) -> sa.Engine:
        return sa.create_engine(self.target_url)


def server_database(admin_url: str, backend: str) -> Iterator[str]:
    name = f"sp_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    preparer = admin.dialect.identifier_preparer
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {preparer.quote(name)}"))
    url = sa.make_url(admin_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {preparer.quote(name)} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {preparer.quote(name)}"))
        admin.dispose()


def make_databases(backend: str, tmp_path: Path) -> Iterator[Databases]:
    """A fresh source and target on ``backend``; when the test is done, the counts of every run in their
    ledgers must add up (:mod:`.invariants`)."""
    if backend == "sqlite":
        dbs = Databases(backend, f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'target.db'}")
        yield dbs
        _check_ledgers(dbs)
        return
    admin = PG_ADMIN_URL if backend == "postgresql" else MARIADB_ADMIN_URL
    src_gen = server_database(admin, backend)
    dst_gen = server_database(admin, backend)
    source_url = next(src_gen)
    target_url = next(dst_gen)
    try:
        dbs = Databases(backend, source_url, target_url)
        yield dbs
        _check_ledgers(dbs)
    finally:
        for gen in (src_gen, dst_gen):
            for _ in gen:
                pass


def _check_ledgers(dbs: Databases) -> None:
    problems = [p for url in (dbs.source_url, dbs.target_url) for p in counts_that_do_not_add_up(url)]
    assert not problems, "the counts of these runs do not add up:\n" + "\n".join(problems)


OUTAGE_SECRET = "Sup3r-S3cret-Outage-pw"
"""The password of ``${SYNC_OUTAGE_PW}`` in URLs made by :func:`with_password` (the server ignores it)."""


def with_password(url: str) -> str:
    """``url`` with ``postgres:${SYNC_OUTAGE_PW}@`` as its credentials (the local server trusts 127.0.0.1)."""
    return url.replace("postgres@", "postgres:${SYNC_OUTAGE_PW}@")


def terminate(url: str) -> int:
    """Terminate every backend connected to the database of ``url`` except ours; returns how many."""
    database = sa.make_url(url).database
    admin = sa.create_engine(sa.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": database},
                ).all()
            )
    finally:
        admin.dispose()
