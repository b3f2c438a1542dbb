"""Typed models of an HTTP API source (``kind: rest``): endpoint, records path, auth, paginator, retries.

Each auth type and each paginator is one model, chosen by its ``type``; the connector
(:mod:`sync_pipelines.connectors.rest`) has one small class for each.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sync_pipelines.config.urls import check_http_port, has_http_credentials


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _dotted(value: str | None) -> str | None:
    if value is not None and (not value.strip() or any(not part for part in value.split("."))):
        raise ValueError(f"{value!r} is not a dotted path such as `data.items`")
    return value


# ----------------------------------------------------------------------------- auth


class BearerAuth(_Model):
    """``Authorization: Bearer <token>``."""

    type: Literal["bearer"] = "bearer"
    token: str = Field(description="The token; use a `${ENV}` reference.")


class BasicAuth(_Model):
    """HTTP basic authentication."""

    type: Literal["basic"] = "basic"
    username: str = Field(description="User name (`${ENV}` allowed).")
    password: str = Field(description="Password; use a `${ENV}` reference.")


class HeaderAuth(_Model):
    """A key sent in a request header, e.g. `X-API-Key`."""

    type: Literal["header"] = "header"
    name: str = Field(min_length=1, description="Header name, e.g. `X-API-Key`.")
    value: str = Field(description="Header value; use a `${ENV}` reference.")


class QueryAuth(_Model):
    """A key sent as a query parameter, e.g. `api_key`; it never appears in logs or errors."""

    type: Literal["query"] = "query"
    name: str = Field(min_length=1, description="Query parameter name, e.g. `api_key`.")
    value: str = Field(description="Parameter value; use a `${ENV}` reference.")


RestAuth = Annotated[BearerAuth | BasicAuth | HeaderAuth | QueryAuth, Field(discriminator="type")]


# ----------------------------------------------------------------------------- paginators


class PageNumberPaginator(_Model):
    """Pages numbered 1, 2, 3...; the last page is the first one holding fewer than `size` records."""

    type: Literal["page_number"] = "page_number"
    page_param: str = Field(default="page", min_length=1, description="Query parameter of the page number.")
    first_page: int = Field(default=1, ge=0, description="Number of the first page (0 or 1).")
    size_param: str | None = Field(
        default="page_size", description="Query parameter of the page size; null: the API's own size is `size`."
    )
    size: int = Field(default=100, ge=1, le=100_000, description="Records per page.")


class OffsetPaginator(_Model):
    """Record offsets 0, limit, 2*limit...; the last page is the first one holding fewer than `limit` records."""

    type: Literal["offset"] = "offset"
    offset_param: str = Field(default="offset", min_length=1, description="Query parameter of the offset.")
    limit_param: str = Field(default="limit", min_length=1, description="Query parameter of the page size.")
    limit: int = Field(default=100, ge=1, le=100_000, description="Records per page.")


class CursorPaginator(_Model):
    """A cursor found in each response and sent back for the next page; no cursor ends the read."""

    type: Literal["cursor"] = "cursor"
    cursor_path: str = Field(description="Dotted path of the next cursor in the response, e.g. `meta.next_cursor`.")
    cursor_param: str = Field(default="cursor", min_length=1, description="Query parameter the cursor is sent in.")

    _path = field_validator("cursor_path")(lambda cls, v: _dotted(v))


class LinkHeaderPaginator(_Model):
    """The `Link` header's `rel="next"` URL (RFC 8288), as GitHub's API sends it; no next link ends the read."""

    type: Literal["link_header"] = "link_header"


class NextUrlPaginator(_Model):
    """A URL of the next page found in each response (relative URLs allowed); none ends the read."""

    type: Literal["next_url"] = "next_url"
    next_url_path: str = Field(description="Dotted path of the next page's URL in the response, e.g. `links.next`.")

    _path = field_validator("next_url_path")(lambda cls, v: _dotted(v))


class SinglePage(_Model):
    """One request; the response holds every record."""

    type: Literal["single_page"] = "single_page"


RestPaginator = Annotated[
    PageNumberPaginator | OffsetPaginator | CursorPaginator | LinkHeaderPaginator | NextUrlPaginator | SinglePage,
    Field(discriminator="type"),
]


# ----------------------------------------------------------------------------- the source


class RestIncremental(_Model):
    """How an incremental sync asks the API for the records changed since the committed watermark."""

    param: str | None = Field(
        default=None,
        min_length=1,
        description="Query parameter given the watermark's cursor value (e.g. `updated_since`). The API's filter "
        "should be inclusive (`>=`): records at the watermark itself are dropped by the reader using the key. "
        "Left out, every page is read and records at or before the watermark are dropped by the reader.",
    )


class RestRetries(_Model):
    """Retries of one request after 429, 5xx, a timeout or a dropped connection, with exponential backoff."""

    attempts: int = Field(default=5, ge=0, le=20, description="Retries of one request (0: none).")
    backoff_s: float = Field(
        default=0.5, ge=0, le=60, description="First backoff; it doubles on each retry (up to 60 s)."
    )
    max_retry_after_s: int = Field(
        default=120,
        ge=0,
        le=86_400,
        description="Longest `Retry-After` honoured; a server asking to wait longer fails the run, saying so.",
    )


class RestSource(_Model):
    """Records of a paged JSON HTTP API (GET requests)."""

    kind: Literal["rest"] = "rest"
    url: str = Field(
        description="The endpoint, e.g. `https://directory.example.com/api/v1/users` (`${ENV}` allowed). Query "
        "parameters go in `params`, credentials in `auth`."
    )
    records: str | None = Field(
        default=None,
        description="Dotted path of the list of records in each response, e.g. `data.items`; "
        "left out, the response itself is the list.",
    )
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Fixed query parameters of every request (`${ENV}` allowed in values)."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers (`${ENV}` allowed in values)."
    )
    auth: RestAuth | None = Field(default=None, description="bearer, basic, header or query; none: no auth.")
    paginator: RestPaginator = Field(
        default_factory=SinglePage,
        description="page_number, offset, cursor, link_header, next_url or single_page (the default).",
    )
    incremental: RestIncremental = Field(
        default_factory=RestIncremental,
        description="With mode `incremental`: the query parameter the committed watermark is sent in.",
    )
    timeout_s: float = Field(default=30.0, gt=0, le=3600, description="Seconds to wait for one response.")
    retries: RestRetries = Field(default_factory=RestRetries, description="Retries of transient failures.")
    max_pages: int = Field(
        default=100_000, ge=1, description="Most pages one read may request; more fails the run (a looping API)."
    )
    verify_certs: bool = Field(default=True, description="Verify the server's TLS certificate.")

    _records = field_validator("records")(lambda cls, v: _dotted(v))

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "${")):
            raise ValueError(f"url {value!r} must start with http:// or https://")
        check_http_port(value)
        if has_http_credentials(value):
            raise ValueError("the url holds a user and password: give them in `auth` (type basic) instead")
        return value

    @model_validator(mode="after")
    def _one_owner_per_param(self) -> RestSource:
        owned = [self.incremental.param]
        paginator = self.paginator
        if isinstance(paginator, PageNumberPaginator):
            owned += [paginator.page_param, paginator.size_param]
        elif isinstance(paginator, OffsetPaginator):
            owned += [paginator.offset_param, paginator.limit_param]
        elif isinstance(paginator, CursorPaginator):
            owned.append(paginator.cursor_param)
        if isinstance(self.auth, QueryAuth):
            owned.append(self.auth.name)
        taken = sorted({name for name in owned if name is not None and name in self.params})
        if taken:
            raise ValueError(f"params: {', '.join(taken)} is set by the paginator, auth or incremental; remove it")
        return self


__all__ = [
    "BasicAuth",
    "BearerAuth",
    "CursorPaginator",
    "HeaderAuth",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "OffsetPaginator",
    "PageNumberPaginator",
    "QueryAuth",
    "RestAuth",
    "RestIncremental",
    "RestPaginator",
    "RestRetries",
    "RestSource",
    "SinglePage",
]
