"""Connection URLs with ``${VAR}`` references: parsed once from the file's text, filled in per component.

The structure of a URL (dialect, user, password, host, port, database, query) comes from the text
written in the configuration file alone: every ``${VAR}`` is replaced by a token that holds no URL
delimiter before the text is split. At run time each reference's value is put into its component as
it is, and the URL is assembled with :meth:`sqlalchemy.engine.URL.create`, so a password holding
``@ : / ? # %``, spaces or any other character can never move the host, the port or the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy.engine import URL

from sync_pipelines.config.secrets import REFERENCE, resolve_values
from sync_pipelines.errors import SecretError

_PLACEHOLDER = "\ue000{}\ue001"
_PLACEHOLDER_RE = re.compile("\ue000([0-9]+)\ue001")
_MAX_PORT = 65_535
# SQLAlchemy's own URL grammar (sqlalchemy.engine.url._parse_url), applied to the tokenised text.
_URL_RE = re.compile(
    r"""
    (?P<name>[\w+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/?]+)\]|(?P<ipv4host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.X | re.S,
)


@dataclass(frozen=True)
class UrlTemplate:
    """The components of a URL as written, each possibly holding reference tokens (see :func:`parse_url_template`)."""

    drivername: str
    username: str | None
    password: str | None
    host: str | None
    port: str | None
    database: str | None
    query: tuple[tuple[str, str], ...]
    references: tuple[str, ...]
    """Variable names, indexed by the number in each token."""

    def shown(self, text: str | None) -> str | None:
        """A component with its tokens written back as ``${VAR}``."""
        if text is None:
            return None
        return _PLACEHOLDER_RE.sub(lambda m: "${" + self.references[int(m.group(1))] + "}", text)


def _tokenise(template: str) -> tuple[str, tuple[str, ...]]:
    names: list[str] = []

    def _token(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return _PLACEHOLDER.format(len(names) - 1)

    return REFERENCE.sub(_token, template), tuple(names)


def parse_url_template(template: str) -> UrlTemplate:
    """Split a URL as written in a configuration file into its components.

    Raises:
        ValueError: the text is not a SQLAlchemy URL, a reference stands in the dialect, or the port
            is neither a number from 1 to 65535 nor exactly one ``${VAR}``.
    """
    text, names = _tokenise(template.strip())
    match = _URL_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            "not a SQLAlchemy URL: expected dialect[+driver]://[user[:password]@]host[:port]/database "
            "(a ${VAR} cannot stand in the dialect)"
        )
    parts = match.groupdict()
    port = parts["port"] or None
    url = UrlTemplate(
        drivername=parts["name"],
        username=_unquote(parts["username"]),
        password=_unquote(parts["password"]),
        host=parts["ipv4host"] or parts["ipv6host"],
        port=port,
        database=_unquote(parts["database"]),
        query=tuple(parse_qsl(parts["query"] or "", keep_blank_values=True)),
        references=names,
    )
    if port is not None and not _PLACEHOLDER_RE.fullmatch(port):
        _check_port(port, f"port {url.shown(port)!r}")
    return url


def _unquote(text: str | None) -> str | None:
    # Literal text may be percent-encoded, as SQLAlchemy reads it; tokens hold no '%'.
    return None if text is None else unquote(text)


def _check_port(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= _MAX_PORT:
        raise ValueError(f"{what} is not a port number (1-{_MAX_PORT})")
    return int(text)


def check_http_port(template: str) -> str:
    """Validate the port of an ``http(s)://`` endpoint as written (a ``${VAR}`` port is checked at run time).

    Raises:
        ValueError: the port is neither a number from 1 to 65535 nor exactly one ``${VAR}``.
    """
    text, names = _tokenise(template.strip())
    authority = urlsplit(text).netloc.rpartition("@")[2]
    if authority.startswith("["):
        authority = authority.partition("]")[2]
    _, colon, port = authority.partition(":")
    if colon and not _PLACEHOLDER_RE.fullmatch(port):
        shown = _PLACEHOLDER_RE.sub(lambda m: "${" + names[int(m.group(1))] + "}", port)
        _check_port(port, f"port {shown!r}")
    return template


def check_url(template: str) -> str:
    """Validate a URL as written (see :func:`parse_url_template`); returns it unchanged."""
    parse_url_template(template)
    return template


def build_url(template: str, *, where: str) -> URL:
    """The SQLAlchemy URL of ``template`` with each ``${VAR}`` filled in from the environment.

    Each value is placed into the component that holds its reference, unencoded and unparsed.

    Raises:
        ValueError: the text is not a valid URL (see :func:`parse_url_template`).
        SecretError: a variable is not set, or the one standing for the port holds no port number
            (named without its value).
    """
    url = parse_url_template(template)
    values = resolve_values(url.references, where=where)

    def fill(text: str | None) -> str | None:
        if text is None:
            return None
        return _PLACEHOLDER_RE.sub(lambda m: values[url.references[int(m.group(1))]], text)

    port: int | None = None
    if url.port is not None:
        try:
            port = _check_port(fill(url.port) or "", f"port {url.shown(url.port)}")
        except ValueError as exc:
            raise SecretError([f"{where}: {exc}"]) from None
    return URL.create(
        url.drivername,
        username=fill(url.username),
        password=fill(url.password),
        host=fill(url.host),
        port=port,
        database=fill(url.database),
        query={fill(key) or "": fill(value) or "" for key, value in url.query},
    )


def display_url(template: str) -> str:
    """The URL as written, for people: the password hidden, ``${VAR}`` references left unresolved."""
    try:
        url = parse_url_template(template)
    except ValueError:
        return "<invalid URL>"
    shown = url.drivername + "://"
    if url.username is not None:
        shown += url.shown(url.username) or ""
        shown += ":***@" if url.password is not None else "@"
    if url.host is not None:
        host = url.shown(url.host) or ""
        shown += f"[{host}]" if ":" in host else host
    if url.port is not None:
        shown += f":{url.shown(url.port)}"
    if url.database is not None:
        shown += f"/{url.shown(url.database)}"
    if url.query:
        shown += "?" + "&".join(f"{url.shown(k)}={url.shown(v)}" for k, v in url.query)
    return shown


__all__ = ["UrlTemplate", "build_url", "check_http_port", "check_url", "display_url", "parse_url_template"]
