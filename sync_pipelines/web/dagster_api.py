"""The Dagster webserver's GraphQL API: launch, cancel and retry runs, read queued runs, a run's progress lines
and schedule states, and turn schedules on or off.

A resolution made in the history view is a Dagster run like one from the launchpad: it has its own
event log, tags (``sync/trigger=api``, ``sync/user``) and the new evaluation of ``no_open_conflicts``.
A sync launched from the view is a plain run of ``sync_<name>`` (no partition, no confirmation dialog)
with the ``sync/user`` tag.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from sync_pipelines.errors import LaunchError
from sync_pipelines.types import ConflictChoice

LOCATION = "sync_pipelines"
"""The code location name of ``workspace.yaml`` and ``pyproject.toml``'s ``[tool.dagster]``."""
RESOLVE_JOB = "resolve_conflicts"
RESOLVE_OP = "resolve_selected_conflicts"
SYNC_JOB_PREFIX = "sync_"
"""A sync's job is ``sync_<name>``."""
DRY_RUN_JOB_PREFIX = "dry_run_"
"""A sync's dry-run job is ``dry_run_<name>`` (``orchestration.names.dry_run_job_name``)."""
TIMEOUT_S = 30
READ_TIMEOUT_S = 5
"""A page waits this long for what it only reads from Dagster (queued runs, schedule states)."""
SYNC_TAG = "sync/name"
USER_TAG = "sync/user"
SCHEDULE_SUFFIX = "_schedule"
"""A sync's schedule is ``<name>_schedule``."""
PENDING = ("QUEUED", "NOT_STARTED", "STARTING")
"""Dagster run statuses of a run that waits to start (the ledger has no row for it yet)."""
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")

LAUNCH = """
mutation Launch($job: String!, $location: String!, $config: RunConfigData!, $tags: [ExecutionTag!]) {
  launchRun(executionParams: {
    selector: {repositoryLocationName: $location, repositoryName: "__repository__", jobName: $job},
    runConfigData: $config,
    executionMetadata: {tags: $tags}
  }) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""


BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { partitionKeys }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

RUN_TAGS = """
query RunTags($id: ID!) {
  runOrError(runId: $id) { __typename ... on Run { tags { key value } } ... on Error { message } }
}
"""

RUN_FIELDS = "runId status creationTime startTime endTime jobName parentRunId tags { key value }"
RUN = f"query Run($id: ID!) {{ runOrError(runId: $id) {{ __typename ... on Run {{ {RUN_FIELDS} }} }} }}"
RUNS = f"""
query Runs($filter: RunsFilter!, $limit: Int) {{
  runsOrError(filter: $filter, limit: $limit) {{ __typename ... on Runs {{ results {{ {RUN_FIELDS} }} }} }}
}}
"""
LOGS = """
query Logs($id: ID!, $cursor: String) {
  logsForRun(runId: $id, afterCursor: $cursor) {
    __typename
    ... on EventConnection { cursor hasMore events { __typename ... on MessageEvent { message } } }
  }
}
"""
TERMINATE = """
mutation Terminate($id: String!) {
  terminateRun(runId: $id) { __typename ... on TerminateRunFailure { message } ... on Error { message } }
}
"""
REEXECUTE = """
mutation Reexecute($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""
SCHEDULES = """
query Schedules($location: String!) {
  schedulesOrError(repositorySelector: {repositoryLocationName: $location, repositoryName: "__repository__"}) {
    __typename
    ... on Schedules { results { name scheduleState { id status } } }
    ... on Error { message }
  }
}
"""
START_SCHEDULE = """
mutation Start($location: String!, $name: String!) {
  startSchedule(scheduleSelector: {
    repositoryLocationName: $location, repositoryName: "__repository__", scheduleName: $name
  }) { __typename ... on ScheduleStateResult { scheduleState { status } } ... on Error { message } }
}
"""
STOP_SCHEDULE = """
mutation Stop($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename ... on ScheduleStateResult { scheduleState { status } } ... on Error { message }
  }
}
"""


@dataclass(frozen=True)
class DagsterRun:
    """A run as Dagster's GraphQL API reports it."""

    run_id: str
    status: str
    """Dagster's status: QUEUED, NOT_STARTED, STARTING, STARTED, SUCCESS, FAILURE, CANCELING, CANCELED."""
    created: float
    started: float | None
    ended: float | None
    job: str
    parent_run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def sync(self) -> str | None:
        """The sync the run belongs to (its ``sync/name`` tag)."""
        return self.tags.get(SYNC_TAG)

    @property
    def pending(self) -> bool:
        """Whether the run still waits to start."""
        return self.status in PENDING

    @property
    def dry_run(self) -> bool:
        """Whether the run carries the ``sync/dry_run`` tag."""
        return self.tags.get("sync/dry_run") == "true"

    @classmethod
    def from_graphql(cls, data: dict[str, Any]) -> DagsterRun:
        return cls(
            run_id=str(data["runId"]),
            status=str(data["status"]),
            created=float(data["creationTime"]),
            started=data.get("startTime"),
            ended=data.get("endTime"),
            job=str(data.get("jobName") or ""),
            parent_run_id=data.get("parentRunId"),
            tags={t["key"]: t["value"] for t in data.get("tags") or []},
        )


@dataclass(frozen=True)
class RunLogs:
    """The log messages of a run after a cursor, and the cursor to ask from next time."""

    messages: list[str]
    cursor: str | None


@dataclass(frozen=True)
class ScheduleState:
    """Whether a schedule is on in Dagster (its instigator state), and the state's id to stop it by."""

    name: str
    on: bool
    state_id: str


@dataclass(frozen=True)
class DagsterApi:
    """The Dagster webserver at ``url`` (e.g. ``http://127.0.0.1:3000``)."""

    url: str

    def _post(self, query: str, variables: dict[str, Any], timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(  # noqa: S310 - the configured Dagster webserver
            f"{self.url.rstrip('/')}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                answer: dict[str, Any] = json.loads(response.read())
        except (urllib.error.URLError, OSError) as exc:
            raise LaunchError(f"the Dagster webserver at {self.url} did not answer: {exc}") from None
        if answer.get("errors"):
            raise LaunchError(f"Dagster at {self.url}: {answer['errors'][0].get('message')}")
        return dict(answer["data"])

    def _launch(self, job: str, config: dict[str, Any], tags: dict[str, str]) -> str:
        """Launch ``job`` with ``config`` and ``tags``; returns the new run's id."""
        variables = {
            "job": job,
            "location": LOCATION,
            "config": config,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        result = self._post(LAUNCH, variables)["launchRun"]
        if result["__typename"] == "LaunchRunSuccess":
            return str(result["run"]["runId"])
        messages = [e["message"] for e in result.get("errors", [])] or [result.get("message", "")]
        raise LaunchError(f"Dagster refused to launch {job} ({result['__typename']}): {'; '.join(messages)}")

    def resolve_conflicts(self, sync: str, conflict_ids: list[int], choice: ConflictChoice, user: str) -> str:
        """Launch ``resolve_conflicts`` for ``conflict_ids`` of ``sync``; returns the new run's id."""
        config = {
            "ops": {
                RESOLVE_OP: {
                    "config": {"sync": sync, "conflict_ids": conflict_ids, "choice": choice.value, "resolved_by": user}
                }
            }
        }
        return self._launch(RESOLVE_JOB, config, {"sync/trigger": "api", "sync/user": user})

    def launch_sync(self, sync: str, *, partitioned: bool, full_sync: bool, dry_run: bool, user: str) -> str:
        """Launch a plain run of ``sync_<sync>`` (no partition: it reads from the watermark, or everything with
        ``full_sync``) recorded under ``user``; returns the new run's id.

        A partitioned sync's job takes the flags at ``ops.<name>.config``: Dagster allows no flat form on it.
        """
        flags = {"full_sync": full_sync, "dry_run": dry_run, "user": user}
        config: dict[str, Any] = {"ops": {sync: {"config": flags}}} if partitioned else dict(flags)
        # A dry run goes through the sync's dry-run job: tagged ``sync/dry_run`` from its launch, and without checks.
        job = f"{DRY_RUN_JOB_PREFIX}{sync}" if dry_run else f"{SYNC_JOB_PREFIX}{sync}"
        return self._launch(job, config, {"sync/user": user})

    def launch_hosts(self, sync: str, ips: list[str], time_range: str | None, *, dry_run: bool, user: str) -> str:
        """Launch a run of the host-metrics sync ``sync_<sync>`` for the hosts ``ips`` (the launchpad's
        ``host_ip_list``), over ``time_range`` (None: the configured range), recorded under ``user``."""
        config: dict[str, Any] = {"host_ip_list": list(ips), "dry_run": dry_run, "user": user}
        if time_range:
            config["query_time_range"] = time_range
        return self._launch(f"{SYNC_JOB_PREFIX}{sync}", config, {"sync/user": user})

    def launch_backfill(self, sync: str, first: str, last: str, user: str) -> str:
        """Backfill the partitions ``first``..``last`` (both included) of the asset ``sync``, as Dagster's
        asset page does; every run of the backfill carries the ``sync/user`` tag. Returns the backfill's id."""
        params = {
            "partitionsByAssets": [
                {"assetKey": {"path": [sync]}, "partitions": {"range": {"start": first, "end": last}}}
            ],
            "tags": [{"key": "sync/user", "value": user}],
            "title": f"{sync} {first}..{last}",
        }
        result = self._post(BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] == "LaunchBackfillSuccess":
            return str(result["backfillId"])
        if result.get("partitionKeys"):
            raise LaunchError(f"Dagster knows no partition(s) {', '.join(result['partitionKeys'])} of {sync}")
        messages = [e["message"] for e in result.get("errors", [])] or [result.get("message", "")]
        raise LaunchError(
            f"Dagster refused to backfill {sync} {first}..{last} ({result['__typename']}): {'; '.join(messages)}"
        )

    def run_tags(self, run_id: str) -> dict[str, str]:
        """The tags of Dagster run ``run_id``; empty when Dagster does not know the run."""
        result = self._post(RUN_TAGS, {"id": run_id})["runOrError"]
        if result["__typename"] != "Run":
            return {}
        return {tag["key"]: tag["value"] for tag in result["tags"]}

    # -- runs in every state

    def run(self, run_id: str) -> DagsterRun | None:
        """The run ``run_id`` as Dagster knows it, None when it has no such run."""
        found = self._post(RUN, {"id": run_id}, READ_TIMEOUT_S)["runOrError"]
        return DagsterRun.from_graphql(found) if found["__typename"] == "Run" else None

    def pending_runs(self, sync: str | None = None) -> list[DagsterRun]:
        """Runs of syncs that wait in Dagster's queue (or are being started), first in line first."""
        run_filter: dict[str, Any] = {"statuses": list(PENDING)}
        if sync is not None:
            run_filter["tags"] = [{"key": SYNC_TAG, "value": sync}]
        found = self._post(RUNS, {"filter": run_filter, "limit": 500}, READ_TIMEOUT_S)["runsOrError"]
        if found["__typename"] != "Runs":
            raise LaunchError(f"Dagster at {self.url} did not list its queue ({found['__typename']})")
        runs = [DagsterRun.from_graphql(r) for r in found["results"]]
        return sorted((r for r in runs if r.sync), key=lambda r: (r.created, r.run_id))

    def logs(self, run_id: str, cursor: str | None = None) -> RunLogs:
        """The run's log messages after ``cursor`` (all of them without one)."""
        messages: list[str] = []
        while True:
            found = self._post(LOGS, {"id": run_id, "cursor": cursor}, READ_TIMEOUT_S)["logsForRun"]
            if found["__typename"] != "EventConnection":
                raise LaunchError(f"Dagster at {self.url} has no event log of run {run_id}")
            messages.extend(e["message"] for e in found["events"] if e.get("message"))
            cursor = found["cursor"] or cursor
            if not found["hasMore"]:
                return RunLogs(messages, cursor)

    def terminate(self, run_id: str) -> None:
        """Ask Dagster to cancel the run (a queued run is dropped from the queue, a running one stops at the
        next batch boundary)."""
        result = self._post(TERMINATE, {"id": run_id})["terminateRun"]
        if result["__typename"] != "TerminateRunSuccess":
            raise LaunchError(f"Dagster did not cancel run {run_id}: {result.get('message', result['__typename'])}")

    def reexecute(self, run_id: str, *, from_failure: bool, user: str) -> str:
        """Re-execute run ``run_id`` (from its failed step, or all its steps) recorded under ``user``; returns
        the new run's id."""
        params = {
            "parentRunId": run_id,
            "strategy": "FROM_FAILURE" if from_failure else "ALL_STEPS",
            "extraTags": [{"key": USER_TAG, "value": user}],
        }
        result = self._post(REEXECUTE, {"params": params})["launchRunReexecution"]
        if result["__typename"] == "LaunchRunSuccess":
            return str(result["run"]["runId"])
        raise LaunchError(f"Dagster refused to retry run {run_id} ({result['__typename']}): {result.get('message')}")

    # -- schedules

    def schedules(self) -> dict[str, ScheduleState]:
        """Every schedule of the code location, by name, with whether it is on."""
        found = self._post(SCHEDULES, {"location": LOCATION}, READ_TIMEOUT_S)["schedulesOrError"]
        if found["__typename"] != "Schedules":
            raise LaunchError(f"Dagster at {self.url} did not list the schedules: {found.get('message')}")
        return {
            s["name"]: ScheduleState(s["name"], s["scheduleState"]["status"] == "RUNNING", s["scheduleState"]["id"])
            for s in found["results"]
        }

    def set_schedule(self, name: str, on: bool) -> None:
        """Turn schedule ``name`` on or off."""
        if on:
            result = self._post(START_SCHEDULE, {"location": LOCATION, "name": name})["startSchedule"]
        else:
            state = self.schedules().get(name)
            if state is None:
                raise LaunchError(f"Dagster has no schedule {name!r}")
            result = self._post(STOP_SCHEDULE, {"id": state.state_id})["stopRunningSchedule"]
        if result["__typename"] != "ScheduleStateResult":
            verb = "start" if on else "stop"
            raise LaunchError(
                f"Dagster did not {verb} schedule {name!r}: {result.get('message', result['__typename'])}"
            )

    def run_url(self, run_id: str) -> str:
        """The run's page in the Dagster UI."""
        return f"{self.url.rstrip('/')}/runs/{run_id}"
