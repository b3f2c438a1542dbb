"""The API client of a ``rest`` source: pages of records, every failure turned into a readable connector error.

Messages name the sync, the endpoint as written in the file (``${VAR}`` unresolved, no query string, so
no key sent as a parameter) and the page, then the status or the problem; resolved secrets are
redacted from anything the server or the HTTP library says.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import requests

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.config.rest import RestSource
from sync_pipelines.config.secrets import redact, resolve
from sync_pipelines.config.urls import build_http_url, display_http_url
from sync_pipelines.connectors.json_paths import MISSING, find
from sync_pipelines.connectors.rest.auth import build_auth
from sync_pipelines.connectors.rest.paginators import Page, PageRequest, Paginator, build_paginator
from sync_pipelines.connectors.rest.retry import RetryAfterTooLong, retrying_session
from sync_pipelines.errors import PermanentConnectorError, TransientConnectorError

_AUTH_STATUSES = {401: "the credentials were refused", 403: "the credentials may not read this endpoint"}
_EXCERPT = 120
_OBJECT_PREFIX = re.compile(r"<[^>]* object at 0x[0-9a-f]+>: ")


class RestClient:
    """GET the pages of one source's endpoint, yielding each page's records."""

    def __init__(self, config: SyncConfig):
        assert isinstance(config.source, RestSource)
        self.sync = config.name
        self.source: RestSource = config.source
        self.endpoint = display_http_url(self.source.url)
        where = f"{config.name}: source"
        self.url = build_http_url(self.source.url, where=f"{where}.url").url
        self.params = {
            name: resolve(value, where=f"{where}.params.{name}") if isinstance(value, str) else value
            for name, value in self.source.params.items()
        }
        self.headers = {
            "Accept": "application/json",
            **{name: resolve(value, where=f"{where}.headers.{name}") for name, value in self.source.headers.items()},
        }
        self.auth = build_auth(self.source.auth, where=f"{where}.auth")
        self.paginator: Paginator = build_paginator(self.source.paginator)
        self.session = retrying_session(self.source.retries)

    def close(self) -> None:
        """Release the session's connections."""
        self.session.close()

    def pages(
        self, extra: dict[str, Any] | None = None, *, max_pages: int | None = None, first: Page | None = None
    ) -> Iterator[Page]:
        """Every page of the endpoint in order (``extra`` query parameters added to the first request).

        ``first``, the first page already read with no ``extra`` parameters, is used instead of reading it again.

        Raises:
            PermanentConnectorError: 4xx, a body that is not JSON or holds no list of records, a page
                repeating the previous one's request, more than ``max_pages`` pages, or a ``Retry-After``
                too long to wait.
            TransientConnectorError: 429 or 5xx after every retry, a timeout or a refused or dropped connection.
        """
        limit = max_pages or self.source.max_pages
        request: PageRequest | None = self.paginator.first(self.url, {**self.params, **(extra or {})})
        previous: PageRequest | None = None
        while request is not None:
            if request.number > limit:
                raise self._permanent(request, f"more than max_pages ({limit}) pages; is the API looping?")
            if previous is not None and (request.url, request.params) == (previous.url, previous.params):
                raise self._permanent(request, "the API gave the same next page again; the read would never end")
            page = first if first is not None and request.number == 1 and not extra else self.get(request)
            yield page
            previous, request = request, self.paginator.next(request, page)

    def get(self, request: PageRequest) -> Page:
        """One page: the response, its JSON body and its records."""
        try:
            response = self.session.get(
                request.url,
                params=request.params,
                headers=self.headers,
                auth=self.auth,
                timeout=self.source.timeout_s,
                verify=self.source.verify_certs,
            )
        except RetryAfterTooLong as exc:
            raise self._permanent(request, str(exc)) from None
        except requests.Timeout:
            raise self._transient(request, f"no response within {self.source.timeout_s:g} s (timeout)") from None
        except requests.ConnectionError as exc:
            raise self._transient(request, f"connection failed: {_reason(exc)}") from None
        except requests.RequestException as exc:
            raise self._permanent(request, f"request failed: {_reason(exc)}") from None
        self._check_status(request, response)
        try:
            body = response.json()
        except (json.JSONDecodeError, requests.JSONDecodeError, UnicodeDecodeError):
            kind = response.headers.get("Content-Type", "no content type")
            excerpt = response.text[:_EXCERPT].replace("\n", " ")
            raise self._permanent(request, f"the response is not JSON ({kind}): {excerpt!r}") from None
        return Page(response, body, self.records(request, body), request.number)

    def records(self, request: PageRequest, body: Any) -> list[Any]:
        """The list of records of a response body, found at ``records``."""
        path = self.source.records
        found = body if path is None else find(body, path)
        if found is MISSING:
            keys = ", ".join(sorted(map(str, body))) if isinstance(body, dict) else type(body).__name__
            raise self._permanent(request, f"the response has no `{path}` (records); it holds: {keys}")
        if not isinstance(found, list):
            where = f"`{path}`" if path else "the response"
            raise self._permanent(
                request, f"{where} is {_json_type(found)}, not a list of records (set `records` to its path)"
            )
        return found

    def _check_status(self, request: PageRequest, response: requests.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        what = f"HTTP {status} {response.reason or ''}".strip()
        if status in _AUTH_STATUSES:
            raise self._permanent(request, f"{what}: {_AUTH_STATUSES[status]} (auth {self._auth_type()})")
        if status == 429 or status >= 500:
            tries = self.source.retries.attempts
            raise self._transient(request, f"{what} after {tries} retr{'y' if tries == 1 else 'ies'}")
        excerpt = response.text[:_EXCERPT].replace("\n", " ")
        raise self._permanent(request, f"{what}: {excerpt!r}" if excerpt else what)

    def _auth_type(self) -> str:
        return self.source.auth.type if self.source.auth else "none"

    def _where(self, request: PageRequest) -> str:
        return f"sync {self.sync}: GET page {request.number}"

    def _permanent(self, request: PageRequest, problem: str) -> PermanentConnectorError:
        return PermanentConnectorError(redact(f"{self._where(request)}: {problem}"), endpoint=self.endpoint)

    def _transient(self, request: PageRequest, problem: str) -> TransientConnectorError:
        return TransientConnectorError(redact(f"{self._where(request)}: {problem}"), endpoint=self.endpoint)


def _reason(exc: Exception) -> str:
    """What went wrong under a ``requests`` error, without the URL it was requesting (which may hold a key)."""
    inner: Any = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    reason = getattr(inner, "reason", None) or inner
    return redact(_OBJECT_PREFIX.sub("", str(reason)))


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


__all__ = ["RestClient"]
