"""The official Elasticsearch client, built from a source configuration, and readable error texts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from elasticsearch import ApiError, ConnectionTimeout, Elasticsearch, TransportError
from elasticsearch import ConnectionError as EsConnectionError

from sync_pipelines.config.elasticsearch import EsConnection
from sync_pipelines.config.secrets import redact, resolve
from sync_pipelines.errors import PermanentConnectorError, TransientConnectorError


def dig(document: dict[str, Any], path: str) -> Any:
    """A field of a document's ``_source`` by dotted path (or the literal dotted key); None when absent."""
    if path in document:
        return document[path]
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def display_endpoint(template: str) -> str:
    """The endpoint as shown to people: no user or password, ``${VAR}`` references left as written."""
    parts = urlsplit(template)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def es_client(source: EsConnection, *, where: str, connections: int = 10) -> Elasticsearch:
    """A client for ``source`` with its secrets resolved (``where`` names the config in errors)."""
    kwargs: dict[str, Any] = {
        "request_timeout": source.request_timeout_s,
        "verify_certs": source.verify_certs,
        "max_retries": 0,
        "retry_on_timeout": False,
        "connections_per_node": max(connections, 1),
    }
    if source.ca_certs:
        kwargs["ca_certs"] = source.ca_certs
    if source.api_key:
        kwargs["api_key"] = resolve(source.api_key, where=f"{where}.api_key")
    elif source.username:
        password = resolve(source.password or "", where=f"{where}.password")
        kwargs["basic_auth"] = (resolve(source.username, where=f"{where}.username"), password)
    return Elasticsearch(resolve(source.endpoint, where=f"{where}.endpoint"), **kwargs)


def error_text(error: BaseException) -> str:
    """Elasticsearch's own words for a failed request: status, error type and reason."""
    if isinstance(error, ApiError):
        reason = _reason(error.body) or str(error.message)
        return redact(f"HTTP {error.meta.status} {error.message}: {reason}")
    if isinstance(error, TransportError):
        return redact(f"{type(error).__name__}: {error.message}")
    return redact(f"{type(error).__name__}: {error}")


def _reason(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict):
        causes = err.get("root_cause") or []
        first = causes[0] if causes and isinstance(causes[0], dict) else err
        return str(first.get("reason") or err.get("reason") or err.get("type"))
    return str(err) if err else None


def check_complete(response: Any, what: str) -> None:
    """Refuse a response that timed out or missed shards: its figures would be silently partial."""
    if response.get("timed_out"):
        raise PermanentConnectorError(f"{what}: the search timed out on the server (partial results refused)")
    shards = response.get("_shards") or {}
    if shards.get("failed"):
        failures = shards.get("failures") or []
        reason = _reason({"error": failures[0].get("reason")}) if failures else None
        raise PermanentConnectorError(
            f"{what}: {shards['failed']} of {shards.get('total')} shards failed"
            + (f" ({reason})" if reason else "")
            + "; partial results refused"
        )


@contextlib.contextmanager
def translate_es_errors(endpoint: str, action: str) -> Iterator[None]:
    """Re-raise client errors as connector errors naming the endpoint (connection problems are transient)."""
    try:
        yield
    except (EsConnectionError, ConnectionTimeout) as exc:
        raise TransientConnectorError(f"{action} failed: {error_text(exc)}", endpoint=endpoint) from None
    except (ApiError, TransportError) as exc:
        status = getattr(getattr(exc, "meta", None), "status", 0)
        cls = TransientConnectorError if status in (429, 502, 503, 504) else PermanentConnectorError
        raise cls(f"{action} failed: {error_text(exc)}", endpoint=endpoint) from None


__all__ = ["check_complete", "display_endpoint", "error_text", "es_client", "translate_es_errors"]
