"""The no_open_conflicts check, the resolve_conflicts job and the conflicts commands, through Dagster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    DagsterInvalidConfigError,
    Definitions,
    ExecuteInProcessResult,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from sync_pipelines.cli import main
from sync_pipelines.config import load_configs
from sync_pipelines.history.links import conflicts_url
from sync_pipelines.orchestration import Tag, build_definitions, job_name
from sync_pipelines.orchestration.checks import build_conflict_check
from sync_pipelines_tests.factories import invoke
from sync_pipelines_tests.support.databases import Databases

CHECK = AssetCheckKey(AssetKey("people"), "no_open_conflicts")


class PeopleSync:
    """A `people` sync between the two databases of ``dbs``, configured in ``tmp_path / syncs``."""

    def __init__(self, dbs: Databases, tmp_path: Path, **overrides: Any):
        self.dbs = dbs
        self.folder = tmp_path / "syncs"
        self.folder.mkdir()
        data: dict[str, Any] = {
            "name": "people",
            "source": {"kind": "sql", "url": dbs.source_url, "table": "people"},
            "target": {"kind": "sql", "url": dbs.target_url, "table": "people", "key": ["id"]},
            "mapping": {"id": {"type": "integer"}, "name": {"type": "string"}, "active": {"type": "boolean"}},
            "mode": "full",
            **overrides,
        }
        (self.folder / "people.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        metadata = sa.MetaData()
        self.source = sa.Table(
            "people",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("name", sa.String(50)),
            sa.Column("active", sa.Boolean),
        )
        engine = dbs.source()
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(self.source.insert(), [{"id": i, "name": f"p{i}", "active": True} for i in range(1, 6)])
        engine.dispose()

    def defs(self) -> Definitions:
        return build_definitions(load_configs(self.folder))

    def run(self) -> ExecuteInProcessResult:
        job = self.defs().resolve_job_def(job_name("people"))
        return job.execute_in_process(instance=DagsterInstance.get(), raise_on_error=False)

    def resolve(self, **config: Any) -> ExecuteInProcessResult:
        job = self.defs().resolve_job_def("resolve_conflicts")
        return job.execute_in_process(
            run_config={"ops": {"resolve_selected_conflicts": {"config": {"sync": "people", **config}}}},
            instance=DagsterInstance.get(),
            raise_on_error=False,
        )

    def edit(self, side: str, person: int, **values: Any) -> None:
        engine = self.dbs.source() if side == "source" else self.dbs.target()
        table = sa.Table("people", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(table.update().where(table.c.id == person).values(**values))
        engine.dispose()

    def target_name(self, person: int) -> str:
        engine = self.dbs.target()
        with engine.connect() as conn:
            name = conn.execute(sa.text("SELECT name FROM people WHERE id = :id"), {"id": person}).scalar_one()
        engine.dispose()
        return str(name)

    def conflict_ids(self) -> list[int]:
        engine = self.dbs.target()
        with engine.connect() as conn:
            ids = [int(i) for (i,) in conn.execute(sa.text("SELECT id FROM _sync_conflicts ORDER BY id"))]
        engine.dispose()
        return ids


def conflict_evaluations(result: ExecuteInProcessResult) -> list[Any]:
    return [e for e in result.get_asset_check_evaluations() if e.check_name == CHECK.name]


def latest_check_status() -> AssetCheckExecutionRecordStatus:
    records = DagsterInstance.get().event_log_storage.get_latest_asset_check_execution_by_key([CHECK])
    return records[CHECK].status


def make_conflict(sync: PeopleSync, person: int = 2) -> ExecuteInProcessResult:
    assert sync.run().success
    sync.edit("target", person, name="fixed by hand")
    sync.edit("source", person, name="renamed at source")
    return sync.run()


@pytest.mark.slow
def test_check_is_red_while_a_conflict_is_open_and_green_after_the_resolve_job(dbs: Databases, tmp_path: Path) -> None:
    sync = PeopleSync(dbs, tmp_path)
    first = sync.run()
    assert first.success
    [green] = conflict_evaluations(first)
    assert green.passed and green.metadata["open_conflicts"].value == 0

    result = make_conflict(sync)

    assert result.success  # conflicts are not failures
    assert DagsterInstance.get().get_run_by_id(result.run_id).tags[Tag.STATUS.value] == "completed"
    [materialization] = result.asset_materializations_for_node("people")
    assert materialization.metadata["conflicted"].value == 1
    [red] = conflict_evaluations(result)
    assert not red.passed and red.severity is AssetCheckSeverity.ERROR
    assert red.metadata["open_conflicts"].value == 1
    assert red.metadata["conflicts_found_by_run"].value == 1
    assert "This run found 1 record(s) changed on both sides." in (red.description or "")
    # The check sends a person to the history view's conflict page, not to the CLI.
    page = conflicts_url("people")
    assert page.endswith("/syncs/people/conflicts")
    assert (red.description or "").endswith(f"Resolve them on the history view's conflict page: {page}")
    assert red.metadata["resolve_in_the_view"].value == page and page in red.metadata["how_to_resolve"].value
    assert "sync-pipelines" not in red.metadata["how_to_resolve"].value
    assert red.metadata["oldest_conflict_age_s"].value >= 0
    [sample] = red.metadata["sample_conflicts"].value.records
    assert sample.data["key"] == "id=2"
    labelled = {k: sample.data[k] for k in ("field", "source", "target", "baseline")}
    assert labelled == {
        "field": "name",
        "source": '"renamed at source"',
        "target": '"fixed by hand"',
        "baseline": "(changed on both sides)",
    }
    assert latest_check_status() is AssetCheckExecutionRecordStatus.FAILED
    assert sync.target_name(2) == "fixed by hand"

    resolved = sync.resolve(conflict_ids=sync.conflict_ids(), choice="keep_source", resolved_by="alice")

    assert resolved.success
    output = resolved.output_for_node("resolve_selected_conflicts")
    assert (output["resolved"], output["remaining_open"], output["resolved_by"]) == ([1], 0, "alice")
    assert sync.target_name(2) == "renamed at source"
    assert latest_check_status() is AssetCheckExecutionRecordStatus.SUCCEEDED
    again = sync.run()
    [still_green] = conflict_evaluations(again)
    assert still_green.passed
    assert again.asset_materializations_for_node("people")[0].metadata["conflicted"].value == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("policy", "kept", "settled"),
    [
        ("source_wins", "renamed at source", "the source's values overwrote the edits made on the target"),
        ("target_wins", "fixed by hand", "the target's edits were kept and the source's changes left out"),
    ],
)
def test_a_run_whose_conflicts_the_policy_settled_warns_until_a_clean_run(
    sqlite_dbs: Databases, tmp_path: Path, policy: str, kept: str, settled: str
) -> None:
    """Nothing waits for a person, but the run overrode someone's edit or dropped a source change: the
    check fails with severity WARN (a yellow warning beside the green run), and passes after a clean run."""
    sync = PeopleSync(sqlite_dbs, tmp_path, on_conflict=policy)

    result = make_conflict(sync)

    assert result.success
    [materialization] = result.asset_materializations_for_node("people")
    assert materialization.metadata["conflicted"].value == 1
    [warning] = conflict_evaluations(result)
    assert (warning.passed, warning.severity) == (False, AssetCheckSeverity.WARN)
    assert warning.metadata["open_conflicts"].value == 0
    assert warning.metadata["conflicts_found_by_run"].value == 1
    assert f"policy `{policy}`: {settled}. None is open." in (warning.description or "")
    assert latest_check_status() is AssetCheckExecutionRecordStatus.FAILED
    assert sync.target_name(2) == kept
    assert sync.conflict_ids() == []

    clean = sync.run()

    [green] = conflict_evaluations(clean)
    assert green.passed and green.metadata["conflicts_found_by_run"].value == 0
    assert green.description == "No open conflicts in `people`."
    assert latest_check_status() is AssetCheckExecutionRecordStatus.SUCCEEDED


@pytest.mark.slow
def test_resolve_job_refuses_resolved_and_unknown_conflicts(sqlite_dbs: Databases, tmp_path: Path) -> None:
    sync = PeopleSync(sqlite_dbs, tmp_path)
    make_conflict(sync)
    [conflict_id] = sync.conflict_ids()
    assert sync.resolve(all=True, choice="keep_target", resolved_by="bob").success

    twice = sync.resolve(conflict_ids=[conflict_id], choice="keep_source", resolved_by="alice")
    unknown = sync.resolve(conflict_ids=[42], choice="keep_source", resolved_by="alice")
    other_sync = sync.resolve(sync="nobody", all=True, choice="keep_source", resolved_by="alice")
    neither = sync.resolve(choice="keep_source", resolved_by="alice")

    for failed, message in (
        (twice, f"conflict {conflict_id} (by bob at"),
        (unknown, "no conflict 42; nothing was resolved"),
        (other_sync, "unknown sync 'nobody'; known syncs: people"),
        (neither, "give the `conflict_ids` to resolve, or `all: true`"),
    ):
        assert not failed.success
        [failure] = [e for e in failed.all_events if e.is_step_failure]
        assert message in (failure.step_failure_data.user_failure_data.description or "")
    assert sync.target_name(2) == "fixed by hand"
    assert latest_check_status() is AssetCheckExecutionRecordStatus.SUCCEEDED


@pytest.mark.slow
def test_resolve_job_without_sync_in_its_config_is_refused(sqlite_dbs: Databases, tmp_path: Path) -> None:
    sync = PeopleSync(sqlite_dbs, tmp_path)
    job = sync.defs().resolve_job_def("resolve_conflicts")
    with pytest.raises(Exception, match="sync"):
        job.execute_in_process(
            run_config={"ops": {"resolve_selected_conflicts": {"config": {"all": True}}}},
            instance=DagsterInstance.get(),
        )


@pytest.mark.slow
def test_resolve_job_refuses_an_unknown_choice_at_launch(sqlite_dbs: Databases, tmp_path: Path) -> None:
    """The choice is an enum of the run config: Dagster refuses `source` before the run is created."""
    sync = PeopleSync(sqlite_dbs, tmp_path)
    make_conflict(sync)
    job = sync.defs().resolve_job_def("resolve_conflicts")
    instance = DagsterInstance.get()
    runs_before = len(instance.get_runs())
    config = {"sync": "people", "all": True, "choice": "source", "resolved_by": "alice"}

    with pytest.raises(DagsterInvalidConfigError, match="config:choice not in enum type ResolveChoice got source"):
        job.execute_in_process(
            run_config={"ops": {"resolve_selected_conflicts": {"config": config}}}, instance=instance
        )

    choice = job.run_config_schema.config_type.fields["ops"].config_type.fields["resolve_selected_conflicts"]
    enum = choice.config_type.fields["config"].config_type.fields["choice"].config_type
    assert enum.config_values == ["keep_source", "keep_target"]
    assert len(instance.get_runs()) == runs_before
    assert sync.target_name(2) == "fixed by hand"


def test_blocking_follows_the_config(sqlite_dbs: Databases, tmp_path: Path) -> None:
    blocking = PeopleSync(sqlite_dbs, tmp_path, block_on_conflicts=True)
    [config] = load_configs(blocking.folder)
    [spec] = build_conflict_check(config).check_specs
    assert spec.blocking and spec.key == CHECK
    [asset_spec] = blocking.defs().resolve_assets_def("people").specs
    assert (asset_spec.metadata["on_conflict"].value, asset_spec.metadata["direction"].value) == ("manual", "one_way")
    assert not next(
        iter(build_conflict_check(config.model_copy(update={"block_on_conflicts": False})).check_specs)
    ).blocking


@pytest.mark.slow
def test_a_blocking_check_fails_the_run_but_not_the_sync_status(sqlite_dbs: Databases, tmp_path: Path) -> None:
    sync = PeopleSync(sqlite_dbs, tmp_path, block_on_conflicts=True)

    result = make_conflict(sync)

    assert not result.success
    assert [e.step_key for e in result.all_events if e.is_step_failure] == ["people_no_open_conflicts"]
    assert DagsterInstance.get().get_run_by_id(result.run_id).tags[Tag.STATUS.value] == "completed"
    assert result.asset_materializations_for_node("people")[0].metadata["conflicted"].value == 1
    assert sync.resolve(all=True, choice="keep_source", resolved_by="alice").success
    assert sync.run().success


@pytest.mark.slow
def test_a_dry_run_reports_the_conflicts_it_would_raise(sqlite_dbs: Databases, tmp_path: Path) -> None:
    sync = PeopleSync(sqlite_dbs, tmp_path)
    assert sync.run().success
    sync.edit("target", 2, name="fixed by hand")
    sync.edit("source", 2, name="renamed at source")
    job = sync.defs().resolve_job_def(job_name("people"))

    result = job.execute_in_process(run_config={"dry_run": True}, instance=DagsterInstance.get())

    [observation] = [e.asset_observation_data.asset_observation for e in result.all_events if e.is_asset_observation]
    assert observation.metadata["conflicted"].value == 1
    [sample] = observation.metadata["samples"].value.records
    assert (sample.data["action"], sample.data["changes"]) == (
        "conflict",
        'name: "fixed by hand" → "renamed at source"',
    )
    assert sync.conflict_ids() == []
    assert sync.target_name(2) == "fixed by hand"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_conflicts_commands_list_show_and_resolve(backend: str, tmp_path: Path) -> None:
    from sync_pipelines_tests.support.databases import make_databases

    for dbs in make_databases(backend, tmp_path):
        sync = PeopleSync(dbs, tmp_path)
        assert invoke("run", "people", config_dir=sync.folder).exit_code == 0
        sync.edit("target", 3, name="fixed by hand", active=False)
        sync.edit("source", 3, name="renamed at source")
        assert invoke("run", "people", config_dir=sync.folder).exit_code == 0
        assert latest_check_status() is AssetCheckExecutionRecordStatus.FAILED

        listed = invoke("conflicts", "list", "people", config_dir=sync.folder)
        assert listed.exit_code == 0
        header, row = listed.output.splitlines()
        assert header.split()[:3] == ["ID", "KEY", "FIELDS"]
        assert row.split()[:4] == ["1", "id=3", "active,", "name"]

        shown = invoke("conflicts", "show", "people", "1", config_dir=sync.folder)
        assert shown.exit_code == 0
        assert 'name    "renamed at source"  "fixed by hand"  (changed on both sides)' in shown.output
        assert "active  true                 false            true" in shown.output

        resolved = invoke(
            "conflicts",
            "resolve",
            "people",
            "--all",
            "--choice",
            "keep_target",
            "--by",
            "carol",
            config_dir=sync.folder,
        )
        assert resolved.exit_code == 0, resolved.output
        assert "resolved conflict(s) 1 with keep_target (by carol)" in resolved.output
        assert "check no_open_conflicts passed" in resolved.output
        assert latest_check_status() is AssetCheckExecutionRecordStatus.SUCCEEDED
        assert sync.target_name(3) == "fixed by hand"
        assert (
            invoke("conflicts", "list", "people", config_dir=sync.folder).output.strip() == "people: no open conflicts"
        )
        assert "keep_target by carol" in invoke("conflicts", "list", "people", "--all", config_dir=sync.folder).output

        again = CliRunner().invoke(
            main,
            [
                "--config-dir",
                str(sync.folder),
                "conflicts",
                "resolve",
                "people",
                "1",
                "--choice",
                "keep_source",
                "--by",
                "dan",
            ],
        )
        assert again.exit_code == 1
        assert "conflict 1 (by carol at" in again.output and "already resolved; nothing was resolved" in again.output
        assert sync.target_name(3) == "fixed by hand"
        as_json = json.loads(invoke("conflicts", "show", "people", "1", "--json", config_dir=sync.folder).output)
        assert (as_json["status"], as_json["resolution"], as_json["resolved_by"]) == (
            "resolved",
            "keep_target",
            "carol",
        )
        assert as_json["differences"]["name"] == {
            "source": "renamed at source",
            "target": "fixed by hand",
            "baseline": None,
            "baseline_known": False,
        }
        listed_json = json.loads(
            invoke("conflicts", "list", "people", "--all", "--json", config_dir=sync.folder).output
        )
        assert [c["key"] for c in listed_json] == [{"id": 3}]
        unknown = CliRunner().invoke(main, ["--config-dir", str(sync.folder), "conflicts", "list", "nobody"])
        assert unknown.exit_code == 2 and "unknown sync 'nobody'" in unknown.output
