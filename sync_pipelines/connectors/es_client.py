"""The official Elasticsearch client, built from a source configuration, and readable error texts."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from typing import Any

from elasticsearch import ApiError, ConnectionTimeout, Elasticsearch, TransportError
from elasticsearch import ConnectionError as EsConnectionError

from sync_pipelines.config.elasticsearch import EsConnection
from sync_pipelines.config.secrets import redact, remember, resolve
from sync_pipelines.config.urls import build_http_url, display_http_url
from sync_pipelines.errors import PermanentConnectorError, SecretError, TransientConnectorError


def display_endpoint(template: str) -> str:
    """The endpoint as shown to people: no user or password, ``${VAR}`` references left as written."""
    return display_http_url(template)


def es_client(source: EsConnection, *, where: str, connections: int = 10) -> Elasticsearch:
    """A client for ``source`` with its secrets resolved (``where`` names the config in errors).

    A user and password written in the endpoint are taken out of the URL and sent as basic auth, so no
    character of the password can change the URL the client connects to.

    Raises:
        SecretError: a variable is not set, the filled-in endpoint is not a valid URL, or it holds
            credentials while ``username`` or ``api_key`` is set too.
    """
    endpoint = build_http_url(source.endpoint, where=f"{where}.endpoint")
    kwargs: dict[str, Any] = {
        "request_timeout": source.request_timeout_s,
        "verify_certs": source.verify_certs,
        "max_retries": 0,
        "retry_on_timeout": False,
        "connections_per_node": max(connections, 1),
    }
    if source.ca_certs:
        kwargs["ca_certs"] = source.ca_certs
    if endpoint.username is not None and (source.api_key or source.username):
        raise SecretError(
            [f"{where}.endpoint: holds a user and password, and `username` or `api_key` is set too: give them once"]
        )
    if source.api_key:
        kwargs["api_key"] = resolve(source.api_key, where=f"{where}.api_key")
    elif source.username:
        password = resolve(source.password or "", where=f"{where}.password")
        kwargs["basic_auth"] = _basic_auth(resolve(source.username, where=f"{where}.username"), password)
    elif endpoint.username is not None:
        kwargs["basic_auth"] = _basic_auth(endpoint.username, endpoint.password or "")
    return Elasticsearch(endpoint.url, **kwargs)


def _basic_auth(username: str, password: str) -> str:
    """The basic-auth token of a user and password, encoded as UTF-8 as Elasticsearch decodes it.

    The client would encode a ``(user, password)`` pair as ASCII and fail on any other character;
    given the token, it sends it as it is.
    """
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    remember(token)
    return token


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
