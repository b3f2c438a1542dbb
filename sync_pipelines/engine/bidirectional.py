"""The end of a bidirectional run: records that exist on one side only.

The batches have already carried source changes to the target and target changes back to the
source (see :func:`~sync_pipelines.engine.classify.classify`). What is left is decided here,
from the keys the source still has and the baselines:

- a target row the source does not have and that has no baseline was created on the target: it is
  created in the source;
- a target row the source does not have but that has a baseline was deleted from the source: with
  ``delete_missing`` it is deleted from the target, otherwise restored in the source;
- a source row that has a baseline but is gone from the target was deleted from the target: with
  ``delete_missing`` it is deleted from the source (collected by the batches).

Deletes on either side are refused together, and the run fails, when they exceed
``max_delete_ratio`` of that side. Source writes are committed before the target transaction that
records the new baselines, so a crash in between leaves two sides that agree, which the next run
settles without a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.base import TargetWriter
from sync_pipelines.connectors.sql_reverse import SqlSourceWriter
from sync_pipelines.connectors.values import display
from sync_pipelines.engine.conflicts import Reconciler
from sync_pipelines.engine.guards import check_deletes
from sync_pipelines.errors import DeleteGuardError
from sync_pipelines.types import Counts, RecordAction, RecordOutcome


@dataclass
class Finish:
    """What the end of a bidirectional run did (or, in a dry run, would do)."""

    outcomes: list[RecordOutcome] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    error: str | None = None


def finish_bidirectional(
    config: SyncConfig,
    writer: TargetWriter,
    conn: Connection,
    seen: sa.Table,
    reconciler: Reconciler,
    source: SqlSourceWriter,
    source_deletes: list[dict[str, Any]],
    *,
    run_id: str,
    write: bool,
) -> Finish:
    """Settle the records present on one side only (see the module docstring)."""
    assert writer.table is not None
    done = Finish()
    key_names = list(config.target.key)
    only_target = writer.missing_keys(conn, seen)
    known: set[tuple[Any, ...]] = set()
    if only_target and (write or reconciler.store.exists(conn)):
        found = reconciler.store.read(conn, reconciler.keys_table(only_target))
        known = set(zip(*[found.column(k).to_pylist() for k in key_names], strict=True))
    in_baselines = reconciler.keys_table(only_target)
    typed = list(zip(*[in_baselines.column(k).to_pylist() for k in key_names], strict=True)) if only_target else []
    deleted_at_source = [k for k, t in zip(only_target, typed, strict=True) if t in known]
    created_on_target = [k for k, t in zip(only_target, typed, strict=True) if t not in known]
    if reconciler.propagate_deletes:
        target_total = int(conn.execute(sa.select(sa.func.count()).select_from(writer.table)).scalar_one())
        try:
            check_deletes(config, len(deleted_at_source), target_total, side="target")
            check_deletes(config, len(source_deletes), source.count(), side="source")
        except DeleteGuardError as exc:
            done.error = str(exc)
            return done
    else:
        created_on_target += deleted_at_source
        deleted_at_source = []

    found = reconciler.read_target(conn, reconciler.keys_table(created_on_target)) if created_on_target else None
    rows = found.to_pylist() if found is not None else []
    for row in rows:
        record_key = {k: display(row[k]) for k in key_names}
        done.outcomes.append(RecordOutcome(record_key, RecordAction.SOURCE_CREATED))
    done.counts.add(RecordAction.SOURCE_CREATED, len(rows))
    done.outcomes += [RecordOutcome(k, RecordAction.SOURCE_DELETED) for k in source_deletes]
    done.counts.add(RecordAction.SOURCE_DELETED, len(source_deletes))
    done.outcomes += [
        RecordOutcome({k: display(v) for k, v in zip(key_names, key, strict=True)}, RecordAction.DELETED)
        for key in deleted_at_source
    ]
    done.counts.add(RecordAction.DELETED, len(deleted_at_source))
    if not write:
        return done

    source.write(rows, "creating rows of the target in the source")
    source.delete(source_deletes)
    if found is not None:
        reconciler.agree(conn, run_id, found)
    writer.delete_keys(conn, deleted_at_source)
    gone = [tuple(k[n] for n in key_names) for k in source_deletes]
    reconciler.store.delete(conn, reconciler.keys_table(gone + list(deleted_at_source)))
    return done
