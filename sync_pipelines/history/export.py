"""Export one run (its ledger row and its stored record outcomes) to an Excel workbook or a CSV file.

Both formats stream: the records are read from ``_sync_records`` in chunks and written row by row
(openpyxl's write-only mode), so a run with millions of outcomes exports in constant memory.
"""

from __future__ import annotations

import csv
import enum
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from sync_pipelines.config.secrets import redact
from sync_pipelines.history.ledger import Ledger, RunEntry
from sync_pipelines.history.records import RecordFilter, RunRecords, format_key
from sync_pipelines.types import COUNT_KEYS, RecordAction


class ExportFormat(enum.StrEnum):
    """File formats of ``sync-pipelines export``."""

    XLSX = "xlsx"
    CSV = "csv"


SUMMARY_SHEET = "Summary"
RECORDS_SHEET = "Records"
RECORD_COLUMNS: tuple[str, ...] = ("key", "entity", "action", "changed_fields", "changes", "error", "batch", "time")
_WIDTHS = {"key": 28, "entity": 14, "action": 11, "changed_fields": 24, "changes": 60, "error": 48, "batch": 7}
_HEADER_FONT = Font(bold=True, color="FFFFFF")
_HEADER_FILL = PatternFill("solid", fgColor="305496")
_ACTION_FILLS = {
    RecordAction.FAILED.value: PatternFill("solid", fgColor="F8CBAD"),
    RecordAction.CONFLICT.value: PatternFill("solid", fgColor="FFE699"),
    RecordAction.DELETED.value: PatternFill("solid", fgColor="D9D9D9"),
}


def _show(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def format_changes(changes: str | None) -> tuple[str, str]:
    """``(changed fields, "field: before -> after" lines)`` from the JSON changes of a record."""
    if not changes:
        return "", ""
    try:
        parsed = json.loads(changes)
    except ValueError:
        return "", changes
    lines = []
    for name, pair in parsed.items():
        before, after = [*pair, None, None][:2]
        lines.append(f"{name}: {_show(before)} -> {_show(after)}")
    return ", ".join(parsed), "\n".join(lines)


def record_cells(row: dict[str, Any]) -> list[Any]:
    """The cells of one stored outcome, in :data:`RECORD_COLUMNS` order (secrets removed)."""
    fields, changes = format_changes(row.get("changes"))
    return [
        redact(format_key(row["record_key"])),
        row.get("entity") or "",
        row["action"],
        fields,
        redact(changes),
        redact(row["error"]) if row.get("error") else "",
        row["batch"],
        row["recorded_at"],
    ]


def summary_rows(entry: RunEntry) -> list[tuple[str, Any]]:
    """The run's ledger figures as (label, value) pairs: sync, run, trigger, user, times, status, counts."""
    rows: list[tuple[str, Any]] = [
        ("sync", entry.sync),
        ("run id", entry.run_id),
        ("trigger", entry.trigger.value),
        ("user", entry.user or "-"),
        ("parent run", entry.parent_run_id or "-"),
        ("mode", entry.mode),
        ("dry run", "yes" if entry.dry_run else "no"),
        ("status", entry.status.value),
        ("started (UTC)", entry.started_at),
        ("finished (UTC)", entry.finished_at or "-"),
        ("duration (s)", entry.duration_s if entry.duration_s is not None else "-"),
    ]
    rows.extend((key, entry.counts.get(key, 0)) for key in COUNT_KEYS)
    rows.append(("error", redact(entry.error) if entry.error else "-"))
    return rows


def filter_rows(filters: RecordFilter) -> list[tuple[str, Any]]:
    """The record filter of an export as (label, value) pairs; none when every record is exported."""
    rows: list[tuple[str, Any]] = []
    if filters.entity is not None:
        rows.append(("filter: entity", filters.entity))
    if filters.action:
        rows.append(("filter: action", ", ".join(a.value for a in filters.action)))
    if filters.status is not None:
        rows.append(("filter: status", filters.status.value))
    return rows


def _records(ledger: Ledger, entry: RunEntry, filters: RecordFilter | None) -> Iterator[dict[str, Any]]:
    return RunRecords(ledger, entry).iter_rows(filters or RecordFilter())


def export_csv(path: Path, ledger: Ledger, entry: RunEntry, filters: RecordFilter | None = None) -> int:
    """Write the run's records (those passing ``filters``) as CSV (UTF-8 with BOM, so Excel opens it right).

    Returns the record count.
    """
    n = 0
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run_id", "sync", *RECORD_COLUMNS])
        for row in _records(ledger, entry, filters):
            writer.writerow([entry.run_id, entry.sync, *record_cells(row)])
            n += 1
    return n


def _header(sheet: WriteOnlyWorksheet, names: Sequence[str]) -> list[WriteOnlyCell]:
    cells = []
    for name in names:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font, cell.fill = _HEADER_FONT, _HEADER_FILL
        cells.append(cell)
    return cells


def _record_row(sheet: WriteOnlyWorksheet, values: Iterable[Any], action: str) -> list[WriteOnlyCell]:
    cells = []
    for name, value in zip(RECORD_COLUMNS, values, strict=True):
        cell = WriteOnlyCell(sheet, value=value)
        if name == "changes":
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        if name == "action" and action in _ACTION_FILLS:
            cell.fill = _ACTION_FILLS[action]
        cells.append(cell)
    return cells


def export_xlsx(path: Path, ledger: Ledger, entry: RunEntry, filters: RecordFilter | None = None) -> int:
    """Write a workbook: a summary sheet and a records sheet (styled header, autofilter, frozen header).

    Only the records passing ``filters`` are written; the summary names the filter. Returns the
    number of record rows.
    """
    book = Workbook(write_only=True)
    summary = book.create_sheet(SUMMARY_SHEET)
    summary.column_dimensions["A"].width = 16
    summary.column_dimensions["B"].width = 40
    summary.append(_header(summary, ("field", "value")))
    for label, value in [*summary_rows(entry), *filter_rows(filters or RecordFilter())]:
        summary.append([label, value])

    records = book.create_sheet(RECORDS_SHEET)
    records.freeze_panes = "A2"
    for i, name in enumerate(RECORD_COLUMNS, start=1):
        records.column_dimensions[get_column_letter(i)].width = _WIDTHS.get(name, 20)
    records.append(_header(records, RECORD_COLUMNS))
    n = 0
    for row in _records(ledger, entry, filters):
        records.append(_record_row(records, record_cells(row), row["action"]))
        n += 1
    records.auto_filter.ref = f"A1:{get_column_letter(len(RECORD_COLUMNS))}{n + 1}"
    book.save(path)
    return n
