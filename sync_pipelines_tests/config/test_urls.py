"""Connection URLs: a ``${VAR}`` value never changes the URL's structure, and every form of it is scrubbed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipelines.config.secrets import redact, resolve
from sync_pipelines.config.urls import (
    build_http_url,
    build_url,
    check_http_port,
    display_http_url,
    display_url,
    parse_url_template,
)
from sync_pipelines.errors import SecretError

HOSTILE_PASSWORDS = [
    "Zq9@secret-PW-88",
    "a:b/c?d#e%f",
    "p@ss:w/rd?#%41",
    "with spaces and\ttab",
    "пароль-密码-ümlaut",
    "%2F%40already-encoded",
    "x@evil.example.com:1/other?sslmode=disable#",
]


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_a_password_of_any_shape_stays_the_password(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    monkeypatch.setenv("SP_URL_PW", password)
    url = build_url("postgresql+psycopg://reader:${SP_URL_PW}@db.internal:6432/erp?sslmode=require", where="w")
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "reader",
        password,
        "db.internal",
        6432,
        "erp",
    )
    assert dict(url.query) == {"sslmode": "require"}
    # The rendered form round-trips through SQLAlchemy's own parser: the value is encoded, not spliced.
    again = sa.make_url(url.render_as_string(hide_password=False))
    assert (again.password, again.host, again.port, again.database) == (password, "db.internal", 6432, "erp")


def test_every_component_can_be_a_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"U": "us@r", "P": "p/w", "H": "db-1", "PORT": "5433", "D": "my?db", "M": "a&b=c"}.items():
        monkeypatch.setenv(f"SP_URL_{name}", value)
    url = build_url(
        "postgresql://${SP_URL_U}:${SP_URL_P}@${SP_URL_H}:${SP_URL_PORT}/${SP_URL_D}?application_name=${SP_URL_M}",
        where="w",
    )
    assert (url.username, url.password, url.host, url.port, url.database) == ("us@r", "p/w", "db-1", 5433, "my?db")
    assert dict(url.query) == {"application_name": "a&b=c"}


def test_literal_percent_encoding_keeps_its_meaning() -> None:
    url = build_url("mysql+pymysql://app:p%40ss@db/cmdb", where="w")
    assert url.password == "p@ss"
    assert build_url("sqlite:///demo/warehouse.db", where="w").database == "demo/warehouse.db"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("postgresql://u:p@127.0.0.1:54x2/db", "port '54x2' is not a port number"),
        ("postgresql://u:p@127.0.0.1:${SP_PORT}x/db", "port '${SP_PORT}x' is not a port number"),
        ("postgresql://u:p@127.0.0.1:70000/db", "is not a port number"),
        ("postgresql://u:p@127.0.0.1:-1/db", "is not a port number"),
        ("not a url", "not a SQLAlchemy URL"),
        ("${SP_DIALECT}://u@h/db", "not a SQLAlchemy URL"),
    ],
)
def test_invalid_urls_are_refused_when_parsed(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("$", r"\$").replace("{", r"\{")):
        parse_url_template(template)


def test_a_port_reference_must_hold_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    template = "postgresql://u@h:${SP_URL_PORT}/db"
    parse_url_template(template)  # a reference stands for the port: valid until the run starts
    monkeypatch.setenv("SP_URL_PORT", "five-four-three-two")
    with pytest.raises(SecretError, match=r"target\.url: port \$\{SP_URL_PORT\} is not a port number") as caught:
        build_url(template, where="target.url")
    assert "five-four" not in str(caught.value)
    monkeypatch.setenv("SP_URL_PORT", "5432")
    assert build_url(template, where="target.url").port == 5432


def test_display_hides_the_password_and_keeps_references() -> None:
    assert display_url("postgresql+psycopg://u:${PW}@h:${PORT}/db?x=${Q}") == (
        "postgresql+psycopg://u:***@h:${PORT}/db?x=${Q}"
    )
    assert display_url("postgresql://u:p%40literal@h/db") == "postgresql://u:***@h/db"
    assert display_url("sqlite:///demo/erp.db") == "sqlite:///demo/erp.db"
    assert display_url("postgresql://h:54x2/db") == "<invalid URL>"


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_redaction_covers_encoded_forms_and_fragments(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    monkeypatch.setenv("SP_URL_PW", password)
    url = build_url("postgresql://u:${SP_URL_PW}@h/db", where="w")
    rendered = url.render_as_string(hide_password=False)
    message = f"failed: {rendered} / {password!r} / {password.encode('unicode_escape').decode()}"
    scrubbed = redact(message)
    for fragment in (password, *[p for p in password.replace("@", " ").split() if len(p) >= 6]):
        assert fragment not in scrubbed, scrubbed
    assert "***" in scrubbed


def test_a_secret_holding_a_whole_url_does_not_scrub_its_host_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_URL_BROKER", "pyamqp://guest:Broker-Pw-77@127.0.0.1:5672//")
    resolve("${SP_URL_BROKER}")
    scrubbed = redact("connection to 127.0.0.1:6543 refused; broker pyamqp://guest:Broker-Pw-77@127.0.0.1:5672//")
    assert scrubbed == "connection to 127.0.0.1:6543 refused; broker ***"


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_an_endpoint_password_of_any_shape_stays_the_password(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    monkeypatch.setenv("SP_URL_PW", password)
    endpoint = build_http_url("https://elastic:${SP_URL_PW}@es.internal:9243/proxy", where="w")
    assert (endpoint.url, endpoint.username, endpoint.password) == (
        "https://es.internal:9243/proxy",
        "elastic",
        password,
    )
    assert redact(f"refused: {password}") == "refused: ***"


def test_an_endpoint_from_one_variable_is_read_as_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_URL_ES", "https://ops%40corp:pw%23Zq-9%3F@es.internal:9200")
    endpoint = build_http_url("${SP_URL_ES}", where="source.endpoint")
    assert (endpoint.url, endpoint.username, endpoint.password) == ("https://es.internal:9200", "ops@corp", "pw#Zq-9?")
    assert redact("login pw#Zq-9? refused") == "login *** refused"
    monkeypatch.setenv("SP_URL_ES", "https://ops:pw#Zq-9@es.internal:9200")
    with pytest.raises(SecretError, match=r"source\.endpoint: an endpoint takes no query or fragment") as caught:
        build_http_url("${SP_URL_ES}", where="source.endpoint")
    assert "Zq-9" not in str(caught.value)


def test_every_endpoint_component_can_be_a_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"U": "us@r:x", "P": "p/w?#", "H": "es-1.internal", "PORT": "9201", "PATH": "a b"}.items():
        monkeypatch.setenv(f"SP_URL_{name}", value)
    endpoint = build_http_url("http://${SP_URL_U}:${SP_URL_P}@${SP_URL_H}:${SP_URL_PORT}/${SP_URL_PATH}", where="w")
    assert (endpoint.url, endpoint.username, endpoint.password) == (
        "http://es-1.internal:9201/a%20b",
        "us@r:x",
        "p/w?#",
    )
    monkeypatch.setenv("SP_URL_H", "evil.example.com/x@es")
    with pytest.raises(SecretError, match=r"w: host \$\{SP_URL_H\} holds a URL delimiter"):
        build_http_url("http://${SP_URL_H}:9200", where="w")
    monkeypatch.setenv("SP_URL_PORT", "92x0")
    with pytest.raises(SecretError, match=r"port \$\{SP_URL_PORT\} is not a port number"):
        build_http_url("http://es:${SP_URL_PORT}", where="w")


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("https://u:p#w@es:9200", "takes no query or fragment"),
        ("https://u:p?w@es:9200", "takes no query or fragment"),
        ("https://es:92x0", "port '92x0' is not a port number"),
        ("https://:9200", "names no host"),
        ("ftp://es:21", "not an http:// or https:// URL"),
    ],
)
def test_invalid_endpoints_are_refused_when_parsed(endpoint: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_http_port(endpoint)


def test_an_endpoint_is_displayed_without_its_credentials() -> None:
    assert display_http_url("https://elastic:${ES_PW}@es.internal:${ES_PORT}/p") == "https://es.internal:${ES_PORT}/p"
    assert display_http_url("http://u:p%40w@[::1]:9200") == "http://[::1]:9200"
    assert display_http_url("${ES_URL}") == "${ES_URL}"
