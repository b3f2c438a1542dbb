"""The sync centre beside the Dagster UI: syncs, runs in every state, records, conflicts, backfills.

It reads the run ledger and record history through :mod:`sync_pipelines.history`, and acts only through
Dagster's GraphQL API: it launches runs and ``resolve_conflicts``, lists queued runs and reads a running
run's progress lines, cancels and retries runs, and turns schedules on and off. Nothing below imports it.
"""

from sync_pipelines.web.app import create_app

__all__ = ["create_app"]
