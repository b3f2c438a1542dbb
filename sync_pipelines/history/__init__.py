"""Run history: the run ledger ``_sync_runs``, per-record history queries, statistics and exports.

Plain Python on SQLAlchemy (no Dagster), like the engine; the orchestration layer writes the ledger
from the ops and sensors, the CLI and the ``sync_statistics`` asset read it.
"""

from sync_pipelines.history.ledger import Ledger, RunEntry, Trigger, ledger_groups, open_ledger

__all__ = ["Ledger", "RunEntry", "Trigger", "ledger_groups", "open_ledger"]
