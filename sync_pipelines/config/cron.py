"""Cron expressions: standard 5-field cron as is, Quartz 6/7-field cron converted to what Dagster runs."""

from __future__ import annotations

import re

from sync_pipelines.errors import CronError

# (name, lowest, highest) of the five cron fields Dagster runs.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 0, 6))
_QUARTZ_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_CRON_DAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}
_ATOM = re.compile(r"^(\*|\d+(?:-\d+)?)(?:/(\d+))?$")
# Longest month lengths (February counts its leap day).
_MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


def to_dagster_cron(expression: str) -> str:
    """Return the 5-field cron string Dagster runs for a 5-field cron or a Quartz 6/7-field cron.

    Quartz fields are ``second minute hour day-of-month month day-of-week [year]``; its
    day-of-week counts 1 = Sunday .. 7 = Saturday, and ``?`` means "no value". Expressions whose
    meaning cannot be kept (non-zero seconds, ``L``, ``W``, ``#``, a year, both day fields set)
    or that would never run (``31 2``) raise :class:`CronError`.
    """
    text = " ".join(str(expression).split())
    parts = text.upper().split(" ") if text else []
    try:
        if len(parts) == 5:
            fields = [_normalize(p, i, quartz=False) for i, p in enumerate(parts)]
        elif len(parts) in (6, 7):
            fields = _from_quartz(parts)
        else:
            raise CronError(f"expected 5 fields (cron) or 6-7 fields (Quartz), got {len(parts)}")
        _check_day_exists(fields[2], fields[3])
    except CronError as exc:
        raise CronError(f"cron {text!r}: {exc}") from None
    return " ".join(fields)


def _from_quartz(parts: list[str]) -> list[str]:
    second, *rest = parts
    if len(rest) == 6:
        year = rest.pop()
        if year not in ("*", "?"):
            raise CronError(f"a year field ({year}) cannot be scheduled by Dagster; use '*'")
    if second not in ("0", "00"):
        raise CronError("seconds must be 0, Dagster schedules run at minute granularity")
    dom, dow = rest[2], rest[4]
    if dom == "?" and dow == "?":
        raise CronError("day-of-month and day-of-week cannot both be '?'")
    if dom not in ("*", "?") and dow not in ("*", "?"):
        # Quartz refuses this; cron would run on either day (OR), which is not what was written.
        raise CronError("set day-of-month or day-of-week, and '?' in the other")
    return [_normalize(p, i, quartz=True) for i, p in enumerate(rest)]


def _normalize(part: str, index: int, *, quartz: bool) -> str:
    name = _CRON_FIELDS[index][0]
    names = (_QUARTZ_DAYS if quartz else _CRON_DAYS) if index == 4 else _MONTHS if index == 3 else {}
    for word, number in names.items():
        part = re.sub(rf"\b{word}\b", str(number), part)
    for bad, meaning in (("L", "last"), ("W", "nearest weekday"), ("#", "nth weekday")):
        if bad in part:
            raise CronError(f"{name}: '{bad}' ({meaning}) is not supported by Dagster schedules")
    if part == "?":
        if index not in (2, 4):
            raise CronError(f"{name}: '?' is only allowed in day-of-month or day-of-week")
        return "*"
    items = [_parse_item(item, index, quartz) for item in part.split(",")]
    if index == 4:
        return _day_of_week(items, quartz)
    return ",".join(_format_item(*item) for item in items)


_Item = tuple[int | None, int | None, int | None]  # (start, end, step); start None means '*'


def _parse_item(item: str, index: int, quartz: bool) -> _Item:
    """Read and check one list item (``*``, ``a``, ``a-b``, each with an optional ``/step``)."""
    name, low, high = _CRON_FIELDS[index]
    if index == 4:  # day-of-week as written: Quartz 1-7 (1 = Sunday), cron 0-7 (0 and 7 = Sunday)
        low, high = (1, 7) if quartz else (0, 7)
    match = _ATOM.match(item)
    if not match:
        raise CronError(f"{name}: cannot read {item!r}")
    span, step_text = match.group(1), match.group(2)
    step = int(step_text) if step_text is not None else None
    start: int | None
    end: int | None
    if span == "*":
        start, end = None, None
    elif "-" in span:
        start, end = (int(x) for x in span.split("-"))
    else:
        start = end = int(span)
        if step is not None:  # "a/b" means "from a to the end, every b"; cron's week ends on 6
            end = max(start, 6) if index == 4 and not quartz else high
    for value in (start, end):
        if value is not None and not low <= value <= high:
            raise CronError(f"{name}: {value} is out of range {low}-{high}")
    if start is not None and end is not None and start > end:
        raise CronError(f"{name}: range {start}-{end} runs backwards")
    if step == 0:
        raise CronError(f"{name}: step 0 is not allowed")
    return start, end, step


def _format_item(start: int | None, end: int | None, step: int | None) -> str:
    suffix = f"/{step}" if step else ""
    if start is None:
        return "*" + suffix
    return (str(start) if start == end and step is None else f"{start}-{end}") + suffix


def _values(item: _Item, low: int, high: int) -> range:
    start, end, step = item
    if start is None:
        start, end = low, high
    assert end is not None
    return range(start, end + 1, step or 1)


def _day_of_week(items: list[_Item], quartz: bool) -> str:
    """Day-of-week as an explicit list of cron day numbers (0 = Sunday), so no numbering can leak."""
    if items == [(None, None, None)]:
        return "*"
    low, high = (1, 7) if quartz else (0, 6)
    days = {day for item in items for day in _values(item, low, high)}
    cron_days = sorted({(d - 1) if quartz else (d % 7) for d in days})
    if cron_days == list(range(7)):
        return "*"
    return ",".join(str(d) for d in cron_days)


def _check_day_exists(dom: str, month: str) -> None:
    """Refuse a day-of-month that none of the months has (``31 2``): it would never run."""
    if dom.startswith("*"):
        return
    months = {m for item in month.split(",") for m in _values(_parse_item(item, 3, False), 1, 12)}
    first = min(d for item in dom.split(",") for d in _values(_parse_item(item, 2, False), 1, 31))
    if first > max(_MONTH_DAYS[m] for m in months):
        raise CronError(f"day-of-month {first} does not occur in month(s) {month}, it would never run")
