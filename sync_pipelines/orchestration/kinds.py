"""The Dagster side of the kinds of sync, derived from what each kind declares (:mod:`sync_pipelines.kinds`).

Every kind is built by the one op factory (:mod:`sync_pipelines.orchestration.ops`) and gets the same
three steps, ``<name>_extract -> _transform -> _load``. This module turns a kind's run options model into
the `Config` class of its ops and its launchpad form into a config mapping (for the graph asset and the
job alike), turns the options of a run back into the engine's typed options, and converts the kind's
neutral result metadata into Dagster metadata.

No postponed annotations here: Dagster reads the `Config` class of an op or config mapping from its annotation.
"""

from collections.abc import Callable, Mapping
from typing import Any

from dagster import (
    Config,
    ConfigMapping,
    MetadataValue,
    OpExecutionContext,
    TableColumn,
    TableRecord,
    TableSchema,
    config_mapping,
)
from pydantic import Field, create_model

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.engine.host_files import SKIPPED_LINES_TAG, skipped_lines
from sync_pipelines.engine.manifest import SyncResult
from sync_pipelines.kinds import KindOptions, ResultTable, ResultValue, SyncKind, kind_of
from sync_pipelines.orchestration.host_sensors import HOST_FILE_TAG, INVALID_LINES_TAG

FULL_SYNC_DESCRIPTION = (
    "Ignore the watermark and read the whole source (a full sync also deletes target rows missing "
    "from the source when the sync has `delete_missing`)."
)
DRY_RUN_DESCRIPTION = "Compute the plan and the sample changes, write nothing, keep the watermark."
USER_DESCRIPTION = (
    "Who launches this run. Recorded as the run's user (tag `sync/user`, the run ledger) when Dagster "
    "knows no identity, as open-source Dagster never does."
)


class SyncRunConfig(Config):
    """Options of one sync run, given to each of its three ops (a kind's options are added to it)."""

    full_sync: bool = Field(default=False, description=FULL_SYNC_DESCRIPTION)
    dry_run: bool = Field(default=False, description=DRY_RUN_DESCRIPTION)
    user: str = Field(default="", description=USER_DESCRIPTION)


def _config_class(name: str, options: type[KindOptions], full_sync_description: str | None) -> type[SyncRunConfig]:
    """:class:`SyncRunConfig` with the fields of ``options`` (their types, defaults and descriptions)."""
    fields: dict[str, Any] = {key: (info.annotation, info) for key, info in options.model_fields.items()}
    if full_sync_description:
        fields["full_sync"] = (bool, Field(default=False, description=full_sync_description))
    if not fields:
        return SyncRunConfig
    model: type[SyncRunConfig] = create_model(name, __base__=SyncRunConfig, **fields)
    return model


def _class_name(kind: SyncKind[Any, Any], suffix: str) -> str:
    return "".join(part.capitalize() for part in kind.name.split("_")) + suffix


_RUN_CONFIGS: dict[str, type[SyncRunConfig]] = {}


def run_config_class(kind: SyncKind[Any, Any]) -> type[SyncRunConfig]:
    """The `Config` class of a kind's three ops (one class per kind)."""
    if kind.name not in _RUN_CONFIGS:
        _RUN_CONFIGS[kind.name] = _config_class(
            _class_name(kind, "RunConfig"), kind.options, kind.full_sync_description
        )
    return _RUN_CONFIGS[kind.name]


def launchpad_config_class(cfg: SyncConfig) -> type[SyncRunConfig]:
    """The launchpad form of one sync: its kind's run config with the defaults the kind takes from ``cfg``."""
    kind = kind_of(cfg)
    return _config_class(_class_name(kind, "LaunchpadConfig"), kind.launchpad_form(cfg), kind.full_sync_description)


def kind_options(cfg: SyncConfig, config: SyncRunConfig) -> KindOptions | None:
    """The engine's typed options of the kind of ``cfg`` from an op's run config."""
    return kind_of(cfg).run_options(config.model_dump())


def run_values(config: SyncRunConfig) -> dict[str, Any]:
    """The options a config mapping hands to each op of the sync (those set)."""
    return {key: value for key, value in config.model_dump().items() if value is not None}


def run_config_mapping(cfg: SyncConfig, route: Callable[[dict[str, Any]], dict[str, Any]]) -> ConfigMapping:
    """The sync's launchpad form, its values placed in run config by ``route`` (the graph's ops, or the job's asset)."""
    form = launchpad_config_class(cfg)

    @config_mapping
    def _run_config(config: form) -> dict[str, Any]:  # type: ignore[valid-type]
        return route(run_values(config))

    return _run_config


# ----------------------------------------------------------------------------- result metadata


def table_schema(table: ResultTable) -> TableSchema:
    """The Dagster schema of a result table."""
    return TableSchema(columns=[TableColumn(c.name, c.type, description=c.description) for c in table.columns])


def dagster_metadata(values: Mapping[str, ResultValue]) -> dict[str, MetadataValue]:
    """Dagster metadata of a kind's neutral values: text, numbers, lists as JSON, tables with their schema."""
    metadata: dict[str, MetadataValue] = {}
    for key, value in values.items():
        if isinstance(value, ResultTable):
            records = [TableRecord(dict(row)) for row in value.rows]
            metadata[key] = MetadataValue.table(records=records, schema=table_schema(value))
        elif isinstance(value, bool):
            metadata[key] = MetadataValue.bool(value)
        elif isinstance(value, int):
            metadata[key] = MetadataValue.int(value)
        elif isinstance(value, float):
            metadata[key] = MetadataValue.float(value)
        elif isinstance(value, list):
            metadata[key] = MetadataValue.json(value)
        else:
            metadata[key] = MetadataValue.text(value)
    return metadata


def load_metadata(context: OpExecutionContext, cfg: SyncConfig, result: SyncResult) -> dict[str, MetadataValue]:
    """What the load step adds to the result's counts, watermarks and samples: the kind's result metadata,
    and the host file a file-drop run came from."""
    extra = dagster_metadata(kind_of(cfg).result_metadata(result.details))
    for tag, key in ((HOST_FILE_TAG, "host_file"), (INVALID_LINES_TAG, "host_file_invalid_lines")):
        if tag in context.run.tags:
            extra[key] = MetadataValue.text(context.run.tags[tag])
    if SKIPPED_LINES_TAG in context.run.tags:
        extra["host_file_skipped"] = MetadataValue.text("\n".join(skipped_lines(context.run.tags[SKIPPED_LINES_TAG])))
    return extra


__all__ = [
    "SyncRunConfig",
    "dagster_metadata",
    "kind_options",
    "launchpad_config_class",
    "load_metadata",
    "run_config_class",
    "run_config_mapping",
    "run_values",
    "table_schema",
]
