"""``${ENV_VAR}`` references: resolved only when a run starts, and scrubbed from anything shown."""

from __future__ import annotations

import os
import re
import threading

from sync_pipelines.errors import SecretError

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_known_secrets: set[str] = set()
_lock = threading.Lock()


def references(template: str) -> list[str]:
    """Names of the environment variables a string refers to."""
    return _REFERENCE.findall(template)


def resolve(template: str, *, where: str = "") -> str:
    """Replace every ``${VAR}`` in ``template`` by its environment value.

    The values are remembered so that :func:`redact` can remove them from messages. A missing
    variable raises :class:`SecretError` naming the variable (never a value).
    """
    missing = [name for name in dict.fromkeys(references(template)) if name not in os.environ]
    if missing:
        prefix = f"{where}: " if where else ""
        raise SecretError([f"{prefix}environment variable {name} is not set" for name in missing])

    def _value(match: re.Match[str]) -> str:
        value = os.environ[match.group(1)]
        if len(value) >= 3:
            with _lock:
                _known_secrets.add(value)
        return value

    return _REFERENCE.sub(_value, template)


def redact(text: str) -> str:
    """``text`` with every resolved secret value replaced by ``***``."""
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
