"""Launch the ``resolve_conflicts`` job through the Dagster webserver's GraphQL API.

A resolution made in the history view is a Dagster run like one from the launchpad: it has its own
event log, tags (``sync/trigger=api``, ``sync/user``) and the new evaluation of ``no_open_conflicts``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from sync_pipelines.types import ConflictChoice

LOCATION = "sync_pipelines"
"""The code location name of ``workspace.yaml`` and ``pyproject.toml``'s ``[tool.dagster]``."""
RESOLVE_JOB = "resolve_conflicts"
RESOLVE_OP = "resolve_selected_conflicts"
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


class LaunchError(RuntimeError):
    """Dagster did not start the run: unreachable, or it refused the launch (its message says why)."""


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

    def resolve_conflicts(self, sync: str, conflict_ids: list[int], choice: ConflictChoice, user: str) -> str:
        """Launch ``resolve_conflicts`` for ``conflict_ids`` of ``sync``; returns the new run's id."""
        config = {
            "ops": {
                RESOLVE_OP: {
                    "config": {"sync": sync, "conflict_ids": conflict_ids, "choice": choice.value, "resolved_by": user}
                }
            }
        }
        tags = [{"key": "sync/trigger", "value": "api"}, {"key": "sync/user", "value": user}]
        variables = {"job": RESOLVE_JOB, "location": LOCATION, "config": config, "tags": tags}
        result = self._post(LAUNCH, variables)["launchRun"]
        if result["__typename"] == "LaunchRunSuccess":
            return str(result["run"]["runId"])
        messages = [e["message"] for e in result.get("errors", [])] or [result.get("message", "")]
        raise LaunchError(f"Dagster refused to launch {RESOLVE_JOB} ({result['__typename']}): {'; '.join(messages)}")

    def run_url(self, run_id: str) -> str:
        """The run's page in the Dagster UI."""
        return f"{self.url.rstrip('/')}/runs/{run_id}"
