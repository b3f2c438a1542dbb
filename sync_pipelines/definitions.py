"""The Dagster code location: one asset, job (and schedule) per file of ``$SYNC_PIPELINES_CONFIG_DIR`` or ``./syncs``.

An invalid configuration fails the whole location with the loader's message (file, field, problem).
"""

from sync_pipelines.config import load_configs
from sync_pipelines.orchestration import build_definitions

defs = build_definitions(load_configs())
