"""Host list files: parsing (one IP per line, blank lines and `#` comments), content keys, filing away.

A file is identified by the SHA-256 of its content, so the same list dropped twice is one run.
Finished files move to ``processed/`` or ``failed/`` beside a ``.report.txt`` saying what happened;
nothing is deleted, and an existing file of the same name is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sync_pipelines.connectors.es_hosts import is_ip

HOST_FILE_TAG = "sync/host_file"
"""The run tag naming the dropped file a run was started from (the sensor sets it; the history view shows it)."""
SKIPPED_LINES_TAG = "sync/host_file_skipped"
"""The run tag listing the dropped file's skipped lines with their reasons (:func:`skipped_lines_tag`)."""
SKIPPED_LINES_SHOWN = 100


class FileOutcome(StrEnum):
    """Where a finished host list file goes."""

    PROCESSED = "processed"
    FAILED = "failed"


@dataclass(frozen=True)
class InvalidLine:
    """A line that is neither an IP, blank, nor a comment."""

    number: int
    text: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.text!r} is not an IP address"


@dataclass
class HostList:
    """The IPs of a host list file (first occurrence order, no duplicates) and its invalid lines."""

    ips: list[str] = field(default_factory=list)
    invalid: list[InvalidLine] = field(default_factory=list)


def parse_host_list(text: str) -> HostList:
    """Parse a host list: one IP per line; blank lines, `#` comment lines and trailing comments are allowed."""
    result = HostList()
    seen: set[str] = set()
    # Editors on Windows start UTF-8 files with a byte-order mark; it is not part of the first IP.
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not is_ip(line):
            result.invalid.append(InvalidLine(number, line))
        elif line not in seen:
            seen.add(line)
            result.ips.append(line)
    return result


def skipped_lines_tag(invalid: list[InvalidLine]) -> str:
    """The value of :data:`SKIPPED_LINES_TAG`: a JSON list of the first :data:`SKIPPED_LINES_SHOWN` skipped
    lines (``line 3: 'not-an-ip' is not an IP address``), and how many more the file's report lists."""
    shown = [str(line) for line in invalid[:SKIPPED_LINES_SHOWN]]
    if len(invalid) > len(shown):
        shown.append(f"... and {len(invalid) - len(shown)} more skipped line(s): see the file's report")
    return json.dumps(shown, ensure_ascii=False)


def skipped_lines(tag: str) -> list[str]:
    """The skipped lines of a :data:`SKIPPED_LINES_TAG` value (none for a value that is not such a list)."""
    try:
        value = json.loads(tag)
    except ValueError:
        return []
    return [str(line) for line in value] if isinstance(value, list) else []


def content_key(data: bytes) -> str:
    """The SHA-256 of a file's content (hex)."""
    return hashlib.sha256(data).hexdigest()


def file_away(path: Path, outcome: FileOutcome, report: str) -> Path:
    """Move ``path`` into ``<its folder>/<outcome>/`` with a report beside it; returns the new path."""
    target_dir = path.parent / outcome.value
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    counter = 1
    while target.exists():
        target = target_dir / f"{path.stem}.{counter}{path.suffix}"
        counter += 1
    os.replace(path, target)
    target.with_name(target.name + ".report.txt").write_text(report, encoding="utf-8")
    return target


__all__ = [
    "HOST_FILE_TAG",
    "SKIPPED_LINES_TAG",
    "FileOutcome",
    "HostList",
    "InvalidLine",
    "content_key",
    "file_away",
    "parse_host_list",
    "skipped_lines",
    "skipped_lines_tag",
]
