"""Paginators: one small class per ``paginator.type``, behind one interface.

A paginator gives the first request of a read and, from each response, the next one (None: the read
is complete). Requests are :class:`PageRequest` values, so the client never knows how an API pages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin

import requests

from sync_pipelines.config.rest import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    RestPaginator,
    SinglePage,
)
from sync_pipelines.connectors.json_paths import dig


@dataclass(frozen=True)
class PageRequest:
    """One GET: its URL (no query string unless the API gave one) and query parameters."""

    url: str
    params: Mapping[str, Any] = field(default_factory=dict)
    number: int = 1
    """The page's position in the read, from 1 (for messages)."""


@dataclass(frozen=True)
class Page:
    """A response as the paginator sees it: the HTTP response, its decoded body and its records."""

    response: requests.Response
    body: Any
    records: list[Any]
    number: int = 1
    """The page's position in the read, from 1."""


class Paginator(ABC):
    """How an API pages its records."""

    def first(self, url: str, params: Mapping[str, Any]) -> PageRequest:
        """The request of the first page."""
        return PageRequest(url, dict(params))

    @abstractmethod
    def next(self, request: PageRequest, page: Page) -> PageRequest | None:
        """The request of the page after ``page`` (read with ``request``); None when it was the last."""


def _following(request: PageRequest, **changes: Any) -> PageRequest:
    return replace(request, number=request.number + 1, **changes)


class SinglePagePaginator(Paginator):
    """One request holds every record."""

    def next(self, request: PageRequest, page: Page) -> PageRequest | None:
        """Never a next page."""
        return None


class PageNumberPaging(Paginator):
    """Numbered pages; a page shorter than the page size is the last."""

    def __init__(self, config: PageNumberPaginator):
        self.config = config

    def first(self, url: str, params: Mapping[str, Any]) -> PageRequest:
        """Page ``first_page`` with the page size."""
        sized = {self.config.size_param: self.config.size} if self.config.size_param else {}
        return PageRequest(url, {**params, **sized, self.config.page_param: self.config.first_page})

    def next(self, request: PageRequest, page: Page) -> PageRequest | None:
        """The next number, unless this page was short."""
        if len(page.records) < self.config.size:
            return None
        number = int(request.params[self.config.page_param]) + 1
        return _following(request, params={**request.params, self.config.page_param: number})


class OffsetPaging(Paginator):
    """Record offsets; a page shorter than the limit is the last."""

    def __init__(self, config: OffsetPaginator):
        self.config = config

    def first(self, url: str, params: Mapping[str, Any]) -> PageRequest:
        """Offset 0 with the limit."""
        return PageRequest(url, {**params, self.config.offset_param: 0, self.config.limit_param: self.config.limit})

    def next(self, request: PageRequest, page: Page) -> PageRequest | None:
        """The offset after this page's records, unless this page was short."""
        if len(page.records) < self.config.limit:
            return None
        offset = int(request.params[self.config.offset_param]) + len(page.records)
        return _following(request, params={**request.params, self.config.offset_param: offset})


class CursorPaging(Paginator):
    """A cursor read from each response body, sent back in a query parameter."""

    def __init__(self, config: CursorPaginator):
        self.config = config

    def next(self, request: PageRequest, page: Page) -> PageRequest | None:
        """The same request with the response's cursor; None when the response has none."""
        cursor = dig(page.body, self.config.cursor_path) if isinstance(page.body, dict) else None
        if cursor in (None, ""):
            return None
        return _following(request, params={**request.params, self.config.cursor_param: cursor})


class LinkHeaderPaging(Paginator):
    """The ``Link: <...>; rel="next"`` header (RFC 8288); its URL carries every parameter."""

    def next(self, request: PageRequest, page: Page) -> PageRequest | None:
        """The next link's URL (relative ones resolved against the response's URL)."""
        link = page.response.links.get("next", {}).get("url")
        if not link:
            return None
        return _following(request, url=urljoin(page.response.url, link), params={})


class NextUrlPaging(Paginator):
    """The next page's URL read from each response body; it carries every parameter."""

    def __init__(self, config: NextUrlPaginator):
        self.config = config

    def next(self, request: PageRequest, page: Page) -> PageRequest | None:
        """The body's next URL (relative ones resolved against the response's URL)."""
        link = dig(page.body, self.config.next_url_path) if isinstance(page.body, dict) else None
        if not link or not isinstance(link, str):
            return None
        return _following(request, url=urljoin(page.response.url, link), params={})


def build_paginator(config: RestPaginator) -> Paginator:
    """The paginator of a source's ``paginator`` block."""
    if isinstance(config, PageNumberPaginator):
        return PageNumberPaging(config)
    if isinstance(config, OffsetPaginator):
        return OffsetPaging(config)
    if isinstance(config, CursorPaginator):
        return CursorPaging(config)
    if isinstance(config, LinkHeaderPaginator):
        return LinkHeaderPaging()
    if isinstance(config, NextUrlPaginator):
        return NextUrlPaging(config)
    assert isinstance(config, SinglePage)
    return SinglePagePaginator()


__all__ = [
    "CursorPaging",
    "LinkHeaderPaging",
    "NextUrlPaging",
    "OffsetPaging",
    "Page",
    "PageNumberPaging",
    "PageRequest",
    "Paginator",
    "SinglePagePaginator",
    "build_paginator",
]
