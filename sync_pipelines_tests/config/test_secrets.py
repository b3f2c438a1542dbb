"""``${ENV_VAR}`` references: resolved at run start, named (never shown) when missing, redacted."""

from __future__ import annotations

import pytest

from sync_pipelines.config.secrets import redact, references, resolve
from sync_pipelines.errors import ConfigError, SecretError


def test_references_lists_variable_names() -> None:
    url = "postgresql+psycopg://${DB_USER}:${DB_PASSWORD}@db:5432/erp?app=$HOME&x=${not-a-name}"
    assert references(url) == ["DB_USER", "DB_PASSWORD"]
    assert references("sqlite:///demo/erp.db") == []


def test_resolve_substitutes_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_TEST_USER", "reader")
    monkeypatch.setenv("SP_TEST_PASSWORD", "s3cr3t-pass")

    url = resolve("postgresql+psycopg://${SP_TEST_USER}:${SP_TEST_PASSWORD}@db/erp")

    assert url == "postgresql+psycopg://reader:s3cr3t-pass@db/erp"


def test_resolve_without_references_is_unchanged() -> None:
    assert resolve("sqlite:///demo/erp.db") == "sqlite:///demo/erp.db"


def test_resolve_reads_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_TEST_ROTATED", "first-value")
    assert resolve("${SP_TEST_ROTATED}") == "first-value"
    monkeypatch.setenv("SP_TEST_ROTATED", "second-value")
    assert resolve("${SP_TEST_ROTATED}") == "second-value"


def test_missing_variables_are_named_each_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_TEST_PRESENT", "visible-value-123")
    monkeypatch.delenv("SP_TEST_ABSENT_A", raising=False)
    monkeypatch.delenv("SP_TEST_ABSENT_B", raising=False)
    template = "x://${SP_TEST_PRESENT}:${SP_TEST_ABSENT_A}@${SP_TEST_ABSENT_B}/${SP_TEST_ABSENT_A}"

    with pytest.raises(SecretError) as caught:
        resolve(template, where="syncs/orders.yaml: source.url")

    assert caught.value.problems == [
        "syncs/orders.yaml: source.url: environment variable SP_TEST_ABSENT_A is not set",
        "syncs/orders.yaml: source.url: environment variable SP_TEST_ABSENT_B is not set",
    ]
    # The message never carries a value, even of the variables that are set.
    assert "visible-value-123" not in str(caught.value)
    # A missing secret is a configuration problem: callers handling ConfigError see it too.
    assert isinstance(caught.value, ConfigError)


def test_missing_variable_without_location(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SP_TEST_NOWHERE", raising=False)

    with pytest.raises(SecretError, match=r"^environment variable SP_TEST_NOWHERE is not set$"):
        resolve("${SP_TEST_NOWHERE}")


def test_redact_hides_resolved_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_TEST_REDACT_PW", "hunter2-hunter2")
    url = resolve("mysql+pymysql://app:${SP_TEST_REDACT_PW}@db/app")

    message = f"cannot connect to {url}: access denied for password hunter2-hunter2"

    assert redact(message) == "cannot connect to mysql+pymysql://app:***@db/app: access denied for password ***"


def test_redact_replaces_the_longest_secret_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_TEST_SHORT", "token")
    monkeypatch.setenv("SP_TEST_LONG", "token-with-suffix")
    resolve("${SP_TEST_SHORT} ${SP_TEST_LONG}")

    assert redact("a=token-with-suffix b=token") == "a=*** b=***"


def test_redact_leaves_unresolved_text_and_very_short_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # Values under 3 characters would blank out ordinary text, so they are not tracked.
    monkeypatch.setenv("SP_TEST_TINY", "ab")
    resolve("${SP_TEST_TINY}")

    assert redact("about a table") == "about a table"
    assert redact("never-resolved-value") == "never-resolved-value"
