"""A live Dagster deployment for tests: ``dagster-webserver`` and ``dagster-daemon`` on a free port.

Both processes get a temporary ``DAGSTER_HOME`` holding a copy of the project's ``dagster.yaml``
(queued runs, per-sync pools, run retries), a workspace loading ``live_definitions`` from a
temporary config folder, and the default handling of SIGTERM/SIGINT (a shell started in the
background passes them on ignored, and a run worker that ignores SIGINT cannot be terminated).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
import yaml

from sync_pipelines_tests.factories import SourceTable, sql_sync

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 30
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
CONTROL_ENV = "SYNC_LIVE_CONTROL"
"""Names the fault-injection file ``live_definitions`` reads (see :func:`write_control`)."""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""

BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""

TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId, terminatePolicy: SAFE_TERMINATE) {
    __typename
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime tags { key value } }
  }
}
"""

RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status startTime endTime tags { key value } } }
  }
}
"""

SENSOR_STATE = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { sensorState { id } } }
}
"""

STOP_SENSOR = """
mutation Stop($id: String!) { stopSensor(id: $id) { __typename ... on PythonError { message } } }
"""

RUN_EVENTS = """
query Events($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey }
        ... on ExecutionStepFailureEvent { error { className message } }
      }
    }
  }
}
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_signals() -> None:
    """``preexec_fn`` of every process the tests start: SIGTERM and SIGINT back to their default handling."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Run:
    """A run as the webserver reports it."""

    run_id: str
    status: str
    start_time: float | None
    end_time: float | None
    tags: dict[str, str]

    @classmethod
    def from_graphql(cls, data: dict[str, Any]) -> Run:
        return cls(
            data["runId"],
            data["status"],
            data.get("startTime"),
            data.get("endTime"),
            {t["key"]: t["value"] for t in data.get("tags") or []},
        )


class LiveDagster:
    """The webserver and the daemon of one temporary Dagster home, driven through GraphQL."""

    def __init__(
        self,
        root: Path,
        definitions_module: str,
        env: dict[str, str],
        *,
        instance_yaml: Path = REPO / "dagster.local.yaml",
        workspace: Path | None = None,
        location: str = "live",
    ):
        """``instance_yaml`` becomes the home's ``dagster.yaml``; ``workspace`` (naming ``location``)
        replaces the generated workspace that loads ``definitions_module``."""
        self.root = root
        self.home = root / "dagster_home"
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(instance_yaml, self.home / "dagster.yaml")
        self.location = location
        if workspace is not None:
            self.workspace = workspace
        else:
            self.workspace = root / "workspace.yaml"
            entry = {"module_name": definitions_module, "working_directory": str(REPO), "location_name": location}
            self.workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": entry}]}), encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **env,
            "DAGSTER_HOME": str(self.home),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    # -- processes

    def _start(self, name: str, args: list[str]) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            args,
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # each with its code server in its own process group
            preexec_fn=default_signals,
        )
        log.close()

    def log(self, name: str) -> str:
        """The output of ``webserver`` or ``daemon`` so far."""
        return (self.root / f"{name}.log").read_text(errors="replace")

    def start(self, stop_sensors: tuple[str, ...] = ()) -> None:
        """Start the webserver, wait until it loaded the code location, then start the daemon.

        One after the other: both create the instance's SQLite tables on a fresh home, and two
        processes doing it at once collide ("table instigators already exists"). The sensors named
        in ``stop_sensors`` are turned off before the daemon starts.
        """
        self._start(
            "webserver",
            [str(BIN / "dagster-webserver"), "-w", str(self.workspace), "-h", "127.0.0.1", "-p", str(self.port)],
        )
        self._wait_loaded()
        for name in stop_sensors:
            self.stop_sensor(name)
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])

    def _wait_loaded(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for name, process in self.processes.items():
                assert process.poll() is None, f"{name} exited:\n{self.log(name)}"
            try:
                data = self.graphql(
                    "{ workspaceOrError { ... on Workspace { locationEntries { "
                    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
                )
                [entry] = data["workspaceOrError"]["locationEntries"]
                loaded = entry["locationOrLoadError"]
                assert loaded is None or loaded["__typename"] != "PythonError", loaded
                if loaded and loaded["__typename"] == "RepositoryLocation":
                    return
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the webserver did not load the code location in time"
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM each process group, and SIGKILL what is still there after ``STOP_TIMEOUT_S``."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT_S)

    # -- GraphQL

    def stop_sensor(self, name: str) -> None:
        """Turn a sensor of the code location off (as its toggle in the UI does)."""
        selector = {"repositoryLocationName": self.location, "repositoryName": "__repository__", "sensorName": name}
        sensor = self.graphql(SENSOR_STATE, selector=selector)["sensorOrError"]
        assert sensor["__typename"] == "Sensor", sensor
        stopped = self.graphql(STOP_SENSOR, id=sensor["sensorState"]["id"])["stopSensor"]
        assert stopped["__typename"] == "StopSensorMutationResult", stopped

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return dict(body["data"])

    def launch(self, job: str, run_config: dict[str, Any] | None = None) -> str:
        """Submit a run of ``job`` (to the queue) and return its id."""
        params = {
            "selector": {
                "repositoryLocationName": self.location,
                "repositoryName": "__repository__",
                "pipelineName": job,
            },
            "runConfigData": run_config or {},
        }
        result = self.graphql(LAUNCH, params=params)["launchPipelineExecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return str(result["run"]["runId"])

    def backfill(self, asset: str, partitions: list[str]) -> str:
        result = self.graphql(
            BACKFILL, params={"partitionNames": partitions, "assetSelection": [{"path": [asset]}], "fromFailure": False}
        )["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        return str(result["backfillId"])

    def terminate(self, run_id: str) -> None:
        result = self.graphql(TERMINATE, runId=run_id)["terminateRun"]
        assert result["__typename"] == "TerminateRunSuccess", result

    def run(self, run_id: str) -> Run:
        data = self.graphql(RUN, runId=run_id)["runOrError"]
        assert data["__typename"] == "Run", data
        return Run.from_graphql(data)

    def runs(self, **tags: str) -> list[Run]:
        flt = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
        data = self.graphql(RUNS, filter=flt)["runsOrError"]
        return [Run.from_graphql(r) for r in data["results"]]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.graphql(RUN_EVENTS, runId=run_id)["logsForRun"]["events"])

    def wait(self, condition: Callable[[], Any], what: str, timeout_s: float = 240) -> Any:
        """Poll ``condition`` until it returns something truthy (and return it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            assert time.monotonic() < deadline, f"gave up waiting for {what}\n{self.log('daemon')[-3000:]}"
            time.sleep(0.5)

    def wait_finished(self, run_id: str, timeout_s: float = 240) -> Run:
        """Wait until the run is SUCCESS, FAILURE or CANCELED."""
        return self.wait(lambda: (r := self.run(run_id)).status in FINISHED and r, f"run {run_id} to finish", timeout_s)

    def failures(self, run_id: str) -> list[str]:
        """The run's step failures and error-level messages, to explain an unexpected status."""
        lines = []
        for e in self.events(run_id):
            if e.get("error"):
                lines.append(f"{e.get('stepKey')}: {e['error']['className']}: {e['error']['message']}")
            elif e["__typename"] in ("RunFailureEvent", "EngineEvent") and "fail" in (e.get("message") or "").lower():
                lines.append(str(e.get("message")))
        return lines


def write_control(path: Path, **values: Any) -> None:
    """The fault-injection settings ``live_definitions`` reads on every batch."""
    replace_file(path, json.dumps({"delay": {}, "fail": {}, **values}))


def replace_file(path: Path, text: str) -> None:
    """Write ``path`` whole at once: a run polling it never reads it empty or half written."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


# --- the live syncs' source and configurations, and the browser

ROWS = 40
DAYS = [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 4)]
LIVE_PEOPLE = SourceTable("people", {"name": sa.String(20), "updated_at": sa.DateTime})


def people_rows() -> list[dict[str, Any]]:
    """40 people over four days (10 a day), ``updated_at`` growing with ``id``."""
    return [
        {"id": i, "name": f"p{i}", "updated_at": DAYS[(i - 1) // 10] + dt.timedelta(hours=(i - 1) % 10)}
        for i in range(1, ROWS + 1)
    ]


def live_sync_config(root: Path, name: str, **overrides: Any) -> dict[str, Any]:
    """An incremental sync of ``root/source.db``'s people into ``root/<name>.db``, batches of four."""
    data = sql_sync(
        name,
        root / "source.db",
        root / f"{name}.db",
        target_table="people",
        description=f"People into {name}, incrementally on updated_at.",
        mode="incremental",
        cursor="updated_at",
        batch_size=4,
    )
    data.update(overrides)
    return data


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
