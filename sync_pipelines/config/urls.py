"""Connection URLs with ``${VAR}`` references: parsed once from the file's text, filled in per component.

The structure of a URL (dialect, user, password, host, port, database, query) comes from the text
written in the configuration file alone: every ``${VAR}`` is replaced by a token that holds no URL
delimiter before the text is split. At run time each reference's value is put into its component as
it is, and the URL is assembled with :meth:`sqlalchemy.engine.URL.create`, so a password holding
``@ : / ? # %``, spaces or any other character can never move the host, the port or the database.

HTTP endpoints (Elasticsearch) follow the same rule: the user and password written in the endpoint
are taken out of it and handed to the client as credentials, never spliced into URL text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from sqlalchemy.engine import URL

from sync_pipelines.config.secrets import REFERENCE, remember, resolve_values
from sync_pipelines.errors import SecretError

_PLACEHOLDER = "\ue000{}\ue001"
_PLACEHOLDER_RE = re.compile("\ue000([0-9]+)\ue001")
_REFERENCE_START = _PLACEHOLDER[0]
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


@dataclass(frozen=True)
class _HttpParts:
    """The components of an ``http(s)://`` endpoint as written, with reference tokens (see :func:`_split_http`)."""

    scheme: str
    username: str | None
    password: str | None
    host: str
    port: str | None
    path: str
    names: tuple[str, ...]

    def shown(self, text: str) -> str:
        return _PLACEHOLDER_RE.sub(lambda m: "${" + self.names[int(m.group(1))] + "}", text)


def _split_http(text: str, names: tuple[str, ...]) -> _HttpParts:
    """Split a (tokenised) ``http(s)://`` URL; literal text in the user and password is percent-decoded."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not an http:// or https:// URL with a host")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(
            "an endpoint takes no query or fragment: a '?' or '#' in a password must be percent-encoded "
            "(%3F, %23), or the password given as a ${VAR}"
        )
    userinfo, at, hostport = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = unquote(user), (unquote(secret) if colon else None)
    port: str | None = None
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"unexpected text {rest!r} after the host")
            port = rest[1:]
    else:
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
    if not host:
        raise ValueError("the endpoint names no host")
    url = _HttpParts(parts.scheme, username, password, host, port, parts.path, names)
    if port is not None and not _PLACEHOLDER_RE.fullmatch(port):
        _check_port(port, f"port {url.shown(port)!r}")
    return url


def check_http_port(template: str) -> str:
    """Validate an ``http(s)://`` endpoint as written, its port included (``${VAR}`` parts are checked at run time).

    An endpoint that is one ``${VAR}`` as a whole (or starts with one) is checked once its value is known.

    Raises:
        ValueError: the text is not an http(s) URL with a host, holds a query or fragment, or its port
            is neither a number from 1 to 65535 nor exactly one ``${VAR}``.
    """
    text, names = _tokenise(template.strip())
    if not text.startswith(_REFERENCE_START):
        _split_http(text, names)
    return template


def has_http_credentials(template: str) -> bool:
    """Whether an endpoint as written holds a user (and password) before its host."""
    text, names = _tokenise(template.strip())
    try:
        return _split_http(text, names).username is not None
    except ValueError:
        return False


@dataclass(frozen=True)
class HttpEndpoint:
    """An HTTP endpoint with its ``${VAR}`` values filled in, and the credentials it held taken out of it."""

    url: str
    """``scheme://host:port/path``, with no user or password."""
    username: str | None
    password: str | None


def build_http_url(template: str, *, where: str) -> HttpEndpoint:
    """The endpoint ``template`` with each ``${VAR}`` filled in, and the user and password it holds.

    A value fills the component holding its reference as it is: a password with ``@ : / ? # %``, spaces
    or any other character stays the password. An endpoint that starts with a ``${VAR}`` (the whole
    URL from the environment) is read as a URL once filled in, so a password inside that value must
    be percent-encoded, as in any URL.

    Raises:
        SecretError: a variable is not set, or the filled-in endpoint is not a valid http(s) URL
            (named without any value).
    """
    text, names = _tokenise(template.strip())
    values = resolve_values(names, where=where)

    def fill(part: str | None, encode: bool = False) -> str | None:
        if part is None:
            return None
        return _PLACEHOLDER_RE.sub(
            lambda m: quote(values[names[int(m.group(1))]], safe="/") if encode else values[names[int(m.group(1))]],
            part,
        )

    try:
        if text.startswith(_REFERENCE_START):  # the whole URL comes from the environment
            parts = _split_http(fill(text) or "", ())
            host, port, path = parts.host, parts.port, parts.path
        else:
            parts = _split_http(text, names)
            host, port, path = fill(parts.host) or "", fill(parts.port), fill(parts.path, encode=True) or ""
            if any(char in host for char in "/?#@[] \t\n"):
                raise ValueError(f"host {parts.shown(parts.host)} holds a URL delimiter or a space")
            if port is not None:
                _check_port(port, f"port {parts.shown(parts.port or '')}")
            parts = _HttpParts(parts.scheme, fill(parts.username), fill(parts.password), host, port, path, names)
    except ValueError as exc:
        raise SecretError([f"{where}: {exc}"]) from None
    if parts.password:
        remember(parts.password)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"{parts.scheme}://{shown_host}" + (f":{port}" if port else "") + path
    return HttpEndpoint(url=url, username=parts.username, password=parts.password)


def display_http_url(template: str) -> str:
    """An endpoint as written, for people: no user or password, ``${VAR}`` references left unresolved."""
    text, names = _tokenise(template.strip())
    if text.startswith(_REFERENCE_START):
        return template.strip()
    try:
        parts = _split_http(text, names)
    except ValueError:
        return "<invalid URL>"
    host = parts.shown(parts.host)
    shown = f"{parts.scheme}://" + (f"[{host}]" if ":" in host else host)
    if parts.port is not None:
        shown += f":{parts.shown(parts.port)}"
    return shown + parts.shown(parts.path)


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


__all__ = [
    "HttpEndpoint",
    "UrlTemplate",
    "build_http_url",
    "build_url",
    "check_http_port",
    "check_url",
    "display_http_url",
    "display_url",
    "has_http_credentials",
    "parse_url_template",
]
