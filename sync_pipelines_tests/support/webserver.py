"""The real Dagster webserver for tests: ``dagster-webserver`` on a free port over the test's syncs, and GraphQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import yaml

from sync_pipelines_tests.support.live import REPO, default_signals, free_port

START_TIMEOUT_S = 120

RUN_TIMEOUT_S = 180


RUN_STATUS = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""


class Webserver:
    """A running webserver at ``url``."""

    def __init__(self, url: str):
        self.url = url

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return dict(body["data"])


def run_webserver(tmp_path: Path) -> Iterator[Webserver]:
    """``dagster-webserver`` on a free port, loading ``sync_pipelines.definitions`` from ``tmp_path/syncs``."""
    home = Path(os.environ["DAGSTER_HOME"])
    (home / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                # Launch re-executions at once: no daemon runs in this test to dequeue them.
                "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
                "telemetry": {"enabled": False},
            }
        ),
        encoding="utf-8",
    )
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "sync_pipelines.definitions",
                            "working_directory": str(REPO),
                            "location_name": "sync_pipelines",
                        }
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    port = free_port()
    env = {**os.environ, "SYNC_PIPELINES_CONFIG_DIR": str(tmp_path / "syncs")}
    log = (tmp_path / "webserver.log").open("wb")
    process = subprocess.Popen(
        [Path(sys.executable).parent / "dagster-webserver", "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=default_signals,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, (tmp_path / "webserver.log").read_text(errors="replace")
            try:
                if requests.get(f"{url}/server_info", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "dagster-webserver did not start in time"
            time.sleep(0.5)
        yield Webserver(url)
    finally:
        # The webserver and the code server it started share the new session's process group.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()
