"""A local Elasticsearch-API server for the test suite and the demo (the `noida-db` binary).

`noida-db` (a dev/demo dependency, pinned in pyproject.toml) bundles a Rust binary that speaks the
Elasticsearch REST API. Its bundled binary is started directly, serving only that protocol on a
free port: stopping the binary stops the server (stopping its Python wrapper would not). The server
ends with the process that started it, even when that process is killed (on Linux; see
:func:`~sync_pipelines.signals.dies_with_this_process`).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sync_pipelines.errors import LocalEsError
from sync_pipelines.signals import dies_with_this_process

STARTUP_TIMEOUT_S = 30.0


def binary_path() -> Path:
    """The binary bundled in the installed `noida-db` package."""
    try:
        path = Path(str(resources.files("noida_db").joinpath("noida-db")))
    except ModuleNotFoundError:
        raise LocalEsError("noida-db is not installed: pip install -e '.[dev]'") from None
    if not path.is_file():
        raise LocalEsError(f"noida-db binary not found at {path}")
    path.chmod(0o755)
    return path


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalEs:
    """A running server: its URL and process."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start(data_dir: Path, port: int | None = None) -> LocalEs:
    """Start the server with only its Elasticsearch protocol, and wait until it answers.

    Call it from the main thread (or a thread that lives as long as the server): the server stops
    when the thread that started it ends.
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    command = [
        str(binary_path()),
        "start",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--only",
        "elasticsearch",
        "--elasticsearch-port",
        str(port),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - a fixed command line
            command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=dies_with_this_process()
        )
    server = LocalEs(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalEsError(f"noida-db exited with {process.returncode}: {log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(server.url, timeout=1):  # noqa: S310 - a local http URL
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise LocalEsError(f"noida-db did not answer on {server.url} within {STARTUP_TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def running(data_dir: Path | None = None) -> Iterator[LocalEs]:
    """A server for the duration of a ``with`` block (in a temporary folder unless ``data_dir``)."""
    with contextlib.ExitStack() as stack:
        folder = data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="local-es-")))
        server = start(folder)
        stack.callback(server.stop)
        yield server


__all__ = ["LocalEs", "binary_path", "free_port", "running", "start"]
