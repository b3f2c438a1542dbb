"""The IO manager of the code location: Dagster's filesystem IO manager, with partitions beside, not under, the asset.

The filesystem IO manager keeps an unpartitioned output of asset ``orders`` in the file
``storage/orders`` and the output of its partition ``2024-01-01`` in ``storage/orders/2024-01-01``,
so a partitioned sync could not be run without a partition once it had run with one (the file
would have to be a folder). Partition outputs go to ``storage/orders__partitions/<key>`` instead.

The ``path`` entry of a sync asset's materialization names the target table (``orders in
sqlite:///demo/warehouse.db``); the pickled step output is an internal detail.

A single-run backfill produces one result for a range of partitions; it is stored under each of
them (the stock IO manager refuses such outputs).

Outputs live under ``$SYNC_PIPELINES_IO_DIR`` when it is set (a path or a URL such as
``s3://bucket/io``, like the staging root), else under the instance's storage folder. Steps that run
on different machines need a shared one, as they need shared staging.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagster import FilesystemIOManager, InitResourceContext, InputContext, MetadataValue, OutputContext
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager

if TYPE_CHECKING:
    from upath import UPath

PARTITIONS_SUFFIX = "__partitions"
IO_DIR_ENV = "SYNC_PIPELINES_IO_DIR"


def table_location(spec_metadata: Mapping[str, Any]) -> str | None:
    """``<table> in <target URL>`` from a sync asset's metadata; None for other assets."""
    table, url = (getattr(spec_metadata.get(k), "value", None) for k in ("target_table", "target_url"))
    return f"{table} in {url}" if table and url else None


class _PartitionsBesideAsset(PickledObjectFilesystemIOManager):
    def get_metadata(self, context: OutputContext, obj: Any) -> dict[str, MetadataValue]:
        """A sync asset's ``path`` names its target table, not the pickled manifest the UI cannot open."""
        location = table_location(context.asset_spec.metadata) if context.has_asset_key else None
        return {"path": MetadataValue.path(location)} if location else {}

    def get_path_for_partition(self, context: InputContext | OutputContext, path: UPath, partition: str) -> UPath:
        return super().get_path_for_partition(context, path.with_name(path.name + PARTITIONS_SUFFIX), partition)

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if not context.has_asset_partitions or len(context.asset_partition_keys) < 2:
            super().handle_output(context, obj)
            return
        paths = self._get_paths_for_partitions(context)
        for path in paths.values():
            self.make_directory(path.parent)
            self.dump_to_path(context=context, obj=obj, path=path)
        first, last = min(paths), max(paths)
        context.log.debug(
            f"stored the result of partitions {first} to {last} under {next(iter(paths.values())).parent}"
        )
        context.add_output_metadata(
            {"path": MetadataValue.path(str(next(iter(paths.values())).parent)), **self.get_metadata(context, obj)}
        )


class SyncIOManager(FilesystemIOManager):
    """Pickles step outputs (small manifests) under ``$SYNC_PIPELINES_IO_DIR`` or the instance's storage folder."""

    def create_io_manager(self, context: InitResourceContext) -> PickledObjectFilesystemIOManager:
        base_dir = self.base_dir or os.environ.get(IO_DIR_ENV) or None
        if base_dir is None:
            assert context.instance is not None
            base_dir = context.instance.storage_directory()
        return _PartitionsBesideAsset(base_dir=base_dir)
