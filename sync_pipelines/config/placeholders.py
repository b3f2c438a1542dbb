"""Placeholders of a config template (``<fill in: ...>``): ``validate`` names each one left unfilled."""

from __future__ import annotations

import re
from typing import Any

PLACEHOLDER = re.compile(r"<fill in: [^>]*>")
"""What a template puts where the user must write a value, e.g. ``<fill in: source table>``."""


def placeholder(what: str) -> str:
    """The placeholder text asking for ``what``."""
    return f"<fill in: {what}>"


def find_placeholders(data: Any, path: str = "") -> list[str]:
    """``field.path: placeholder`` for every string value of ``data`` that still holds a placeholder."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found += find_placeholders(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += find_placeholders(value, f"{path}.{index}")
    elif isinstance(data, str):
        match = PLACEHOLDER.search(data)
        if match:
            found.append(f"{path}: placeholder {match.group(0)} is not filled in")
    return found


__all__ = ["PLACEHOLDER", "find_placeholders", "placeholder"]
