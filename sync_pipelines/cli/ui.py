"""``sync-pipelines ui``: the Dagster UI (webserver and daemon), the history view and, for host-metrics
syncs, the demo's local Elasticsearch-API server, started together and stopped together.

Dagster runs as a child process in its own process group (``dagster dev``); the history view is
served by Uvicorn in this process. When either ends, or on Ctrl-C / SIGTERM, the whole Dagster
process group is stopped (SIGTERM, then SIGKILL) and the Elasticsearch-API server with it. Both
children also end when this command is killed outright (``dies_with_this_process``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import click
import uvicorn

from sync_pipelines.cli.shared import config_folder, demo_dir_option, load_configs
from sync_pipelines.config import SyncConfig
from sync_pipelines.config.loader import CONFIG_DIR_ENV
from sync_pipelines.history.links import DEFAULT_HOST, DEFAULT_PORT, HISTORY_URL_ENV
from sync_pipelines.orchestration.instance import ensure_dagster_home, get_instance
from sync_pipelines.orchestration.pools import apply_pool_limits
from sync_pipelines.signals import dies_with_this_process, restore_default_signals
from sync_pipelines.web import create_app
from sync_pipelines.web.site import DAGSTER_URL_ENV

STOP_TIMEOUT_S = 20.0


def dagster_command(workspace: Path, host: str, port: int) -> list[str]:
    """``dagster dev`` (webserver and daemon) of this interpreter's environment on ``host:port``."""
    dagster = Path(sys.executable).with_name("dagster")
    return [str(dagster), "dev", "-w", str(workspace), "-h", host, "-p", str(port)]


def stop_group(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop ``process`` and every process of its group: SIGTERM, then SIGKILL after ``timeout_s``."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # grandchildren that outlived the group leader


@contextlib.contextmanager
def dagster_running(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``dagster dev`` for the duration of a ``with`` block, in a process group of its own so that all of
    Dagster stops together, and ending with this process even when it is killed."""
    preexec = dies_with_this_process(new_session=True)
    process = subprocess.Popen(command, env=env, preexec_fn=preexec)  # noqa: S603 - our own command line
    try:
        yield process
    finally:
        stop_group(process)


def needs_demo_es(configs: list[SyncConfig]) -> bool:
    """Whether a sync reads the demo's Elasticsearch-API server (``${SYNC_DEMO_ES_URL}``) and none is set."""
    from sync_pipelines.demo.hosts import ES_URL_ENV

    if os.environ.get(ES_URL_ENV):
        return False
    return any(f"${{{ES_URL_ENV}}}" in str(getattr(cfg.source, "endpoint", "")) for cfg in configs)


@contextlib.contextmanager
def demo_es(configs: list[SyncConfig], demo_dir: Path) -> Iterator[None]:
    """The demo's seeded Elasticsearch-API server (and CMDB) and its directory API while the UI runs, when a
    sync needs them."""
    from sync_pipelines.demo.directory_api import directory_api_demo
    from sync_pipelines.demo.hosts import host_metrics_demo

    with contextlib.ExitStack() as stack:
        if needs_demo_es(configs):
            click.echo(stack.enter_context(host_metrics_demo(configs, demo_dir)))
        api_note = stack.enter_context(directory_api_demo(configs, demo_dir))
        if api_note:
            click.echo(api_note)
        yield


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _watch(process: subprocess.Popen[bytes], server: uvicorn.Server) -> None:
    """Stop the view when Dagster ends on its own."""
    process.wait()
    server.should_exit = True


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address of the history view and Dagster UI.")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port of the history view.")
@click.option("--dagster-port", type=int, default=3000, show_default=True, help="Port of the Dagster UI.")
@click.option(
    "--workspace",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=Path("workspace.yaml"),
    show_default=True,
    help="Dagster workspace file.",
)
@demo_dir_option("--demo-dir", "Demo folder: the CMDB of the host-metrics syncs is built there when missing.")
@click.pass_context
def ui(ctx: click.Context, host: str, port: int, dagster_port: int, workspace: Path, demo_dir: Path) -> None:
    """Start the Dagster UI and daemon, the history view, and (for host-metrics syncs) a local Elasticsearch-API
    server; stop all of them on Ctrl-C, SIGTERM, or when one ends.

    Both UIs bind 127.0.0.1 unless --host says otherwise: they have no login (see "Running the UI safely"
    in docs/operations.md).
    """
    restore_default_signals()
    # Uvicorn hands SIGTERM back to the handler found before it started once it has shut down; the
    # default one would end this process before Dagster and the Elasticsearch-API server are stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    configs = load_configs(ctx)
    ensure_dagster_home()
    with get_instance() as instance:  # the daemon's queue starts a partitioned sync's runs up to its pool limit
        apply_pool_limits(instance, configs)
    view_url = f"http://{host}:{port}"
    dagster_url = f"http://{host}:{dagster_port}"
    with demo_es(configs, demo_dir):
        env = dict(os.environ)  # with $SYNC_DEMO_ES_URL when the demo's server was started
        env.setdefault(HISTORY_URL_ENV, view_url)
        env[CONFIG_DIR_ENV] = str(config_folder(ctx).resolve())
        with dagster_running(dagster_command(workspace, host, dagster_port), env) as dagster:
            app = create_app(config_folder(ctx), os.environ.get(DAGSTER_URL_ENV, dagster_url))
            server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
            threading.Thread(target=_watch, args=(dagster, server), daemon=True).start()
            click.echo(f"Dagster UI on {dagster_url}, history view on {view_url} (Ctrl-C stops both)")
            server.run()
    click.echo("stopped the Dagster UI and the history view")
