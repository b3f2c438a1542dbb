"""A read-only web view of the run history beside the Dagster UI: syncs, runs, records, conflicts, backfills.

It reads the run ledger and record history through :mod:`sync_pipelines.history` and resolves
conflicts by launching Dagster's ``resolve_conflicts`` job over GraphQL. Nothing below imports it.
"""

from sync_pipelines.web.app import create_app

__all__ = ["create_app"]
