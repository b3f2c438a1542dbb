"""Launch runs through the Dagster webserver's GraphQL API: ``resolve_conflicts``, and a sync's own job.

A resolution made in the history view is a Dagster run like one from the launchpad: it has its own
event log, tags (``sync/trigger=api``, ``sync/user``) and the new evaluation of ``no_open_conflicts``.
A sync launched from the view is a plain run of ``sync_<name>`` (no partition, no confirmation dialog)
with the ``sync/user`` tag.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
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


@dataclass(frozen=True)
class DagsterApi:
    """The Dagster webserver at ``url`` (e.g. ``http://127.0.0.1:3000``)."""

    url: str

    def _post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(  # noqa: S310 - the configured Dagster webserver
            f"{self.url.rstrip('/')}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
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

    def run_url(self, run_id: str) -> str:
        """The run's page in the Dagster UI."""
        return f"{self.url.rstrip('/')}/runs/{run_id}"
