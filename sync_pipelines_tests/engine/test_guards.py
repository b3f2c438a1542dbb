"""The run-outcome rules: the failure ratio and the delete guard raise their errors, and a run's result records them."""

from __future__ import annotations

import pytest

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine.guards import check_deletes, check_failures, settle_status
from sync_pipelines.engine.manifest import SyncResult
from sync_pipelines.errors import DeleteGuardError, FailureRatioExceeded
from sync_pipelines.types import Counts, RunStatus


def config(**extra: object) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": "people",
            "source": {"kind": "sql", "url": "sqlite:///source.db", "table": "people"},
            "target": {"kind": "sql", "url": "sqlite:///target.db", "table": "people", "key": ["id"]},
            **extra,
        }
    )


def result(processed: int, failed: int) -> SyncResult:
    return SyncResult("people", "r1", RunStatus.COMPLETED, Counts(processed=processed, failed=failed), False, False)


def test_failures_within_the_ratio_make_a_partial_run_and_none_a_completed_one() -> None:
    cfg = config(max_failure_ratio=0.1)
    assert check_failures(cfg, Counts(processed=100, failed=0)) is RunStatus.COMPLETED
    assert check_failures(cfg, Counts(processed=100, failed=10)) is RunStatus.PARTIAL


def test_failures_beyond_the_ratio_raise_with_the_sync_the_counts_and_the_unit() -> None:
    with pytest.raises(FailureRatioExceeded) as raised:
        check_failures(config(max_failure_ratio=0.1), Counts(processed=100, failed=11), unit="hosts")
    assert str(raised.value) == "sync people: 11 of 100 hosts failed, more than max_failure_ratio 0.1"
    assert (raised.value.failed, raised.value.processed, raised.value.unit) == (11, 100, "hosts")
    with pytest.raises(FailureRatioExceeded, match="1 of 0 records failed"):
        check_failures(config(max_failure_ratio=1.0), Counts(processed=0, failed=1))


def test_deletes_beyond_the_ratio_raise_naming_the_side() -> None:
    cfg = config(max_delete_ratio=0.2)
    check_deletes(cfg, 2, 10)
    check_deletes(cfg, 0, 0)
    with pytest.raises(DeleteGuardError) as raised:
        check_deletes(cfg, 3, 10, side="source")
    assert str(raised.value) == (
        "sync people: refusing to delete 3 of 10 source rows (30% > max_delete_ratio 20%); nothing was deleted"
    )
    assert (raised.value.deletes, raised.value.total, raised.value.side) == (3, 10, "source")


def test_settle_status_records_a_broken_ratio_and_keeps_an_earlier_failure() -> None:
    cfg = config(max_failure_ratio=0.1)
    partial, failed = result(100, 5), result(100, 50)
    settle_status(cfg, partial)
    settle_status(cfg, failed)
    assert (partial.status, partial.error) == (RunStatus.PARTIAL, None)
    assert failed.status is RunStatus.FAILED
    assert failed.error == "sync people: 50 of 100 records failed, more than max_failure_ratio 0.1"
    refused = result(100, 0)
    refused.status, refused.error = RunStatus.FAILED, "refused earlier"
    settle_status(cfg, refused)
    assert (refused.status, refused.error) == (RunStatus.FAILED, "refused earlier")
