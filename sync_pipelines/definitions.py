"""The Dagster code location: one asset, job (and schedule) per file of ``$SYNC_PIPELINES_CONFIG_DIR`` or ``./syncs``.

An invalid file never stops the other syncs: every valid sync loads, and each invalid file shows as
an asset of the group ``invalid_sync_configs`` with its problems (file, field, message).
"""

from sync_pipelines.config import read_configs
from sync_pipelines.orchestration import build_definitions

_folder = read_configs()
defs = build_definitions(_folder.configs, _folder.invalid)
