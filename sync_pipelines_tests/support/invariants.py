"""Invariants every ledger the test suite writes must keep, checked when a test's databases are dropped.

The counts of a run add up whatever its status (completed, partial, failed, cancelled, closed because its
process died, or a dry run): ``succeeded`` is ``created + updated + unchanged``, and ``processed`` (records
read from the source) is every record with an outcome of its own. Runs of a bidirectional sync that wrote
records back to the source also count those (``source_created`` and the like, counted as created, updated
or deleted without being read from the source): only the first rule holds for them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sync_pipelines.connectors.bookkeeping import RECORDS_TABLE, RUNS_TABLE
from sync_pipelines.types import RecordAction

_REVERSE = [RecordAction.SOURCE_CREATED.value, RecordAction.SOURCE_UPDATED.value, RecordAction.SOURCE_DELETED.value]


def counts_that_do_not_add_up(url: str) -> list[str]:
    """Every run in the ledger at ``url`` whose counts do not add up, described; [] when none (or no ledger)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            if RUNS_TABLE not in names:
                return []
            runs = sa.Table(RUNS_TABLE, sa.MetaData(), autoload_with=conn)
            reverse: set[str] = set()
            if RECORDS_TABLE in names:
                records = sa.Table(RECORDS_TABLE, sa.MetaData(), autoload_with=conn)
                reverse = set(
                    conn.execute(sa.select(records.c.run_id).where(records.c.action.in_(_REVERSE)).distinct()).scalars()
                )
            rows = conn.execute(sa.select(runs)).mappings().all()
    finally:
        engine.dispose()
    return [problem for row in rows if (problem := _problem(dict(row), reverse))]


def _problem(run: dict[str, Any], reverse: set[str]) -> str | None:
    n = {k: int(run.get(k) or 0) for k in run if isinstance(run.get(k), int) or run.get(k) is None}
    label = f"run {run['run_id']} ({run['status']}, sync {run['sync']})"
    succeeded = n.get("created", 0) + n.get("updated", 0) + n.get("unchanged", 0)
    if n.get("succeeded", 0) != succeeded:
        return f"{label}: succeeded={n.get('succeeded')} but created + updated + unchanged = {succeeded}"
    if run["run_id"] in reverse or run.get("records_run_id") in reverse:
        return None
    outcomes = succeeded + sum(n.get(k, 0) for k in ("failed", "skipped", "conflicted", "target_modified"))
    if n.get("processed", 0) != outcomes:
        return (
            f"{label}: processed={n.get('processed')} but the records with an outcome (created, updated, "
            f"unchanged, failed, skipped, conflicted, target_modified) are {outcomes}: "
            + ", ".join(
                f"{k}={n.get(k, 0)}"
                for k in (
                    "created",
                    "updated",
                    "unchanged",
                    "failed",
                    "skipped",
                    "conflicted",
                    "target_modified",
                    "deleted",
                )
            )
        )
    return None
