"""Start a backfill of a range of partitions from a partitioned sync's page.

The form asks for the first and last partition and who starts it, and launches the backfill through
Dagster's GraphQL API (``launchPartitionBackfill``), as the asset page's *Materialize...* dialog does,
with the ``sync/user`` tag on every run. The backfill's page then lists its partition runs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sync_pipelines.config import SyncConfig
from sync_pipelines.config.operations import PartitionGranularity
from sync_pipelines.errors import LaunchError
from sync_pipelines.web.site import check_same_origin, site_of

KEY_FORMATS = {PartitionGranularity.DAILY: "%Y-%m-%d", PartitionGranularity.HOURLY: "%Y-%m-%d-%H:%M"}
"""Dagster's partition keys of daily and hourly time partitions."""
KEY_EXAMPLES = {PartitionGranularity.DAILY: "2024-03-01", PartitionGranularity.HOURLY: "2024-03-01-06:00"}
MAX_PARTITIONS = 10_000
"""The most partitions one backfill from the view may cover."""


@dataclass(frozen=True)
class PartitionRange:
    """The first and last partition key of a backfill (both included) and how many partitions it covers."""

    first: str
    last: str
    count: int


def partition_example(cfg: SyncConfig, at: dt.datetime | None = None) -> str:
    """The partition key of ``at`` in the sync's granularity, or an example key (the form's placeholder)."""
    assert cfg.partitions is not None
    granularity = cfg.partitions.granularity
    return at.strftime(KEY_FORMATS[granularity]) if at else KEY_EXAMPLES[granularity]


def partition_range(cfg: SyncConfig, first: str, last: str) -> PartitionRange:
    """Check the form's range against the sync's partitions; a ValueError names what is wrong.

    Dagster still refuses partitions after the last complete one (the current day or hour).
    """
    if cfg.partitions is None:
        raise ValueError(f"sync {cfg.name!r} has no partitions (add `partitions:` to its configuration)")
    granularity = cfg.partitions.granularity
    fmt, example = KEY_FORMATS[granularity], KEY_EXAMPLES[granularity]
    parsed: list[dt.datetime] = []
    for label, text in (("first", first), ("last", last)):
        if not text:
            raise ValueError(f"enter the {label} partition, e.g. {example}")
        try:
            parsed.append(dt.datetime.strptime(text, fmt))
        except ValueError:
            raise ValueError(
                f"{label} partition {text!r} is not a {granularity.value} partition key such as {example}"
            ) from None
    start, end = parsed
    if end < start:
        raise ValueError(f"the last partition {last} comes before the first {first}")
    if start < cfg.partitions.start:
        raise ValueError(
            f"the first partition {first} is before the sync's first partition {cfg.partitions.start.strftime(fmt)}"
        )
    step = dt.timedelta(days=1) if granularity is PartitionGranularity.DAILY else dt.timedelta(hours=1)
    count = int((end - start) / step) + 1
    if count > MAX_PARTITIONS:
        raise ValueError(f"{count:,} partitions: a backfill from this page covers at most {MAX_PARTITIONS:,}")
    return PartitionRange(first, last, count)


async def start_backfill(request: Request) -> Response:
    """Launch a backfill of the form's range; to the backfill's page, or back to the sync's page with the error."""
    check_same_origin(request)
    site = site_of(request)
    cfg = site.sync(request.path_params["name"])
    form = {k: v[-1].strip() for k, v in parse_qs((await request.body()).decode()).items()}
    first, last, user = form.get("first", ""), form.get("last", ""), form.get("user", "")

    def back(error: str) -> Response:
        query = {"backfill_error": error, "first": first, "last": last, "by": user}
        return RedirectResponse(f"/syncs/{cfg.name}?{urlencode(query)}#backfill", 303)

    try:
        chosen = partition_range(cfg, first, last)
    except ValueError as exc:
        return back(str(exc))
    if not user:
        return back("enter who starts the backfill")
    try:
        backfill_id = await run_in_threadpool(site.dagster.launch_backfill, cfg.name, chosen.first, chosen.last, user)
    except LaunchError as exc:
        return back(str(exc))
    query = {"launched": "1", "sync": cfg.name, "first": first, "last": last, "by": user}
    return RedirectResponse(f"/backfills/{backfill_id}?{urlencode(query)}", 303)
