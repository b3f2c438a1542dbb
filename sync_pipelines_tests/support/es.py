"""Elasticsearch fixtures: a real ES-API server (the noida-db binary) per test session, seeded with
``helpers.bulk``, and a fault-injecting HTTP proxy in front of it for hosts whose query must fail.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from sync_pipelines.demo import local_es
from sync_pipelines.demo.hosts import MAPPING as HOST_MAPPING

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def es_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_es.LocalEs]:
    """One Elasticsearch-API server for the whole session (its own data folder, a free port)."""
    server = local_es.start(tmp_path_factory.mktemp("es-data"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def es(es_server: local_es.LocalEs) -> Iterator[Elasticsearch]:
    """The official client on the session's server."""
    client = Elasticsearch(es_server.url, request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def index_prefix() -> str:
    """A fresh index name prefix per test; the pattern ``<prefix>-*`` matches only this test's indexes."""
    return f"hostmon-{uuid.uuid4().hex[:10]}"


def point(host: str, hours_ago: float, cpu: float, memory: float, disk: float, group: str = "DB组") -> dict[str, Any]:
    """One host-metrics document."""
    return {
        "hostIp": host,
        "hostName": f"host-{host.replace('.', '-')}",
        "group": group,
        "@timestamp": (NOW - dt.timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z"),
        "cpu": cpu,
        "memory": memory,
        "disk": disk,
    }


def seed_hosts(es: Elasticsearch, index: str, docs: list[dict[str, Any]]) -> None:
    """Create ``index`` with the host-metrics mapping and bulk-load ``docs``."""
    es.indices.create(index=index, mappings=HOST_MAPPING)
    ok, errors = helpers.bulk(es, ({"_index": index, "_source": d} for d in docs), refresh=True)
    assert ok == len(docs) and not errors


@dataclass
class FaultProxy:
    """An HTTP proxy to the server: a request naming a `fail` host gets an ES error; one naming a `stall` host
    gets no answer until the proxy stops. With `credentials` set, a request without that user and password
    (basic auth, UTF-8) is refused as Elasticsearch's security layer refuses it: HTTP 401."""

    upstream: str
    fail: set[str] = field(default_factory=set)
    stall: set[str] = field(default_factory=set)
    credentials: tuple[str, str] | None = None
    authenticated: int = 0
    refused: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.credentials is not None and not self._authenticated(proxy.credentials):
                    return
                text = body.decode("utf-8", "replace")
                with proxy.lock:
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    if any(f'"{ip}"' in text for ip in proxy.stall):
                        proxy.released.wait(timeout=120)  # held until the test ends: the client times out first
                    if any(f'"{ip}"' in text for ip in proxy.fail):
                        self._send(
                            500,
                            json.dumps(
                                {
                                    "error": {
                                        "root_cause": [
                                            {"type": "circuit_breaking_exception", "reason": "[parent] Data too large"}
                                        ],
                                        "type": "search_phase_execution_exception",
                                        "reason": "all shards failed",
                                    },
                                    "status": 500,
                                }
                            ).encode(),
                        )
                        return
                    request = urllib.request.Request(
                        proxy.upstream + self.path,
                        data=body or None,
                        method=self.command,
                        headers={k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")},
                    )
                    try:
                        with urllib.request.urlopen(request, timeout=30) as response:
                            self._send(response.status, response.read())
                    except urllib.error.HTTPError as exc:
                        self._send(exc.code, exc.read())
                    except OSError as exc:
                        self._send(502, json.dumps({"error": f"proxy: {exc}"}).encode())
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1

            def _authenticated(self, credentials: tuple[str, str]) -> bool:
                expected = "Basic " + base64.b64encode(":".join(credentials).encode("utf-8")).decode("ascii")
                with proxy.lock:
                    if self.headers.get("Authorization") == expected:
                        proxy.authenticated += 1
                        return True
                    proxy.refused += 1
                reason = f"unable to authenticate user [{credentials[0]}] for REST request [{self.path}]"
                cause = {"type": "security_exception", "reason": reason}
                self._send(401, json.dumps({"error": {**cause, "root_cause": [cause]}, "status": 401}).encode())
                return False

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("X-Elastic-Product", "Elasticsearch")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.released.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def fault_proxy(es_server: local_es.LocalEs) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of the session's server."""
    proxy = FaultProxy(es_server.url)
    proxy.start()
    yield proxy
    proxy.stop()


def write_yaml(folder: Path, name: str, text: str) -> Path:
    """Write one sync configuration file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path
