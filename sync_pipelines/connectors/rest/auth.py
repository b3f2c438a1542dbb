"""Authentication of API requests: one small ``requests`` auth class per ``auth.type``.

Every secret is resolved from its ``${VAR}`` reference when the reader is built, and remembered so
that :func:`~sync_pipelines.config.secrets.redact` removes it from every message.
"""

from __future__ import annotations

import base64

from requests import PreparedRequest
from requests.auth import AuthBase

from sync_pipelines.config.rest import BasicAuth, BearerAuth, HeaderAuth, QueryAuth, RestAuth
from sync_pipelines.config.secrets import remember, resolve


class BearerTokenAuth(AuthBase):
    """``Authorization: Bearer <token>``."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class BasicCredentialsAuth(AuthBase):
    """HTTP basic authentication, the user and password encoded as UTF-8."""

    def __init__(self, username: str, password: str):
        self.token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        remember(self.token)

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = f"Basic {self.token}"
        return request


class HeaderKeyAuth(AuthBase):
    """A key in a named request header."""

    def __init__(self, name: str, value: str):
        self.name, self.value = name, value

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers[self.name] = self.value
        return request


class QueryKeyAuth(AuthBase):
    """A key in a named query parameter."""

    def __init__(self, name: str, value: str):
        self.name, self.value = name, value

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.prepare_url(request.url or "", {self.name: self.value})
        return request


def build_auth(auth: RestAuth | None, *, where: str) -> AuthBase | None:
    """The ``requests`` auth of a source's ``auth`` block, its secrets resolved (``where`` names it in errors).

    Raises:
        SecretError: a variable is not set.
    """
    if auth is None:
        return None
    if isinstance(auth, BearerAuth):
        return BearerTokenAuth(_secret(resolve(auth.token, where=f"{where}.token")))
    if isinstance(auth, BasicAuth):
        password = resolve(auth.password, where=f"{where}.password")
        remember(password)
        return BasicCredentialsAuth(resolve(auth.username, where=f"{where}.username"), password)
    if isinstance(auth, HeaderAuth):
        return HeaderKeyAuth(auth.name, _secret(resolve(auth.value, where=f"{where}.value")))
    assert isinstance(auth, QueryAuth)
    return QueryKeyAuth(auth.name, _secret(resolve(auth.value, where=f"{where}.value")))


def _secret(value: str) -> str:
    """A key written literally in the file (no ``${VAR}``) is a secret all the same."""
    remember(value)
    return value


__all__ = ["BasicCredentialsAuth", "BearerTokenAuth", "HeaderKeyAuth", "QueryKeyAuth", "build_auth"]
