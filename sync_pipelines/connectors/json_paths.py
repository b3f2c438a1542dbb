"""Dotted paths into JSON documents (``data.items``, ``profile.email``): HTTP API records, Elasticsearch sources."""

from __future__ import annotations

from typing import Any

MISSING = object()
"""What :func:`find` returns for a path that is not there (a present ``null`` is None)."""


def find(document: Any, path: str) -> Any:
    """The value at ``path`` (or at the literal dotted key); :data:`MISSING` when absent."""
    if isinstance(document, dict) and path in document:
        return document[path]
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def dig(document: Any, path: str) -> Any:
    """The value at ``path``; None when absent."""
    value = find(document, path)
    return None if value is MISSING else value


__all__ = ["MISSING", "dig", "find"]
