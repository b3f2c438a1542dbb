"""``${ENV_VAR}`` references: resolved only when a run starts, and scrubbed from anything shown."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from sync_pipelines.errors import SecretError

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""A ``${VAR}`` reference; group 1 is the variable's name."""
MIN_SECRET_LENGTH = 3
"""Shorter values are not scrubbed (they would blank out ordinary words)."""
MIN_FRAGMENT_LENGTH = 4
"""Shortest piece of a value, split at URL delimiters and spaces, that is scrubbed on its own."""
_FRAGMENT_SPLIT = re.compile(r"[\s@:/?#&=%;,'\"\\]+")
_known_secrets: set[str] = set()
_lock = threading.Lock()


def references(template: str) -> list[str]:
    """Names of the environment variables a string refers to."""
    return REFERENCE.findall(template)


def resolve_values(names: Iterable[str], *, where: str = "") -> dict[str, str]:
    """The environment values of ``names``, remembered for :func:`redact`.

    Raises:
        SecretError: naming every variable that is not set (never a value).
    """
    wanted = list(dict.fromkeys(names))
    missing = [name for name in wanted if name not in os.environ]
    if missing:
        prefix = f"{where}: " if where else ""
        raise SecretError([f"{prefix}environment variable {name} is not set" for name in missing])
    values = {name: os.environ[name] for name in wanted}
    for value in values.values():
        remember(value)
    return values


def resolve(template: str, *, where: str = "") -> str:
    """Replace every ``${VAR}`` in ``template`` by its environment value.

    The values are remembered so that :func:`redact` can remove them from messages. A missing
    variable raises :class:`SecretError` naming the variable (never a value).
    """
    values = resolve_values(references(template), where=where)
    return REFERENCE.sub(lambda match: values[match.group(1)], template)


def secret_forms(value: str) -> set[str]:
    """Every form of a secret a message may carry: as is, URL-encoded, JSON- or repr-escaped, and its fragments."""
    if len(value) < MIN_SECRET_LENGTH:
        return set()
    forms = {value, quote(value, safe=""), quote(value, safe=" +"), quote_plus(value), quote(value)}
    forms.add(json.dumps(value)[1:-1])
    forms.add(value.replace("\\", "\\\\").replace("'", "\\'"))  # libpq's conninfo quoting
    forms.add(repr(value)[1:-1])
    forms.add(value.encode("unicode_escape").decode("ascii"))
    if "://" not in value:  # a whole URL (an endpoint) is split into hosts and paths, not secret pieces
        forms.update(part for part in _FRAGMENT_SPLIT.split(value) if len(part) >= MIN_FRAGMENT_LENGTH)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def remember(value: str) -> None:
    """Scrub ``value`` (in every form of :func:`secret_forms`) from what :func:`redact` is given from now on."""
    forms = secret_forms(value)
    with _lock:
        _known_secrets.update(forms)


def redact(text: str) -> str:
    """``text`` with every resolved secret value, in any of its forms, replaced by ``***``."""
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
