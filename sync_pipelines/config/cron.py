"""Cron expressions: standard 5-field cron as is, Quartz 6/7-field cron converted to what Dagster runs."""

from __future__ import annotations

import re

# (name, lowest, highest) of the five cron fields Dagster runs.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 0, 6))
_QUARTZ_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_CRON_DAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_ATOM = re.compile(r"^(\*|\d+(?:-\d+)?)(?:/(\d+))?$")


class CronError(ValueError):
    """A cron expression that is malformed or that Dagster cannot run."""


def to_dagster_cron(expression: str) -> str:
    """Return the 5-field cron string Dagster runs for a 5-field cron or a Quartz 6/7-field cron.

    Quartz fields are ``second minute hour day-of-month month day-of-week [year]``; its
    day-of-week counts 1 = Sunday .. 7 = Saturday, and ``?`` means "no value". Expressions whose
    meaning cannot be kept (non-zero seconds, ``L``, ``W``, ``#``, a year) raise :class:`CronError`.
    """
    text = " ".join(str(expression).split())
    parts = text.split(" ") if text else []
    if len(parts) == 5:
        fields = [_normalize(p.upper(), i, quartz=False) for i, p in enumerate(parts)]
    elif len(parts) in (6, 7):
        fields = _from_quartz([p.upper() for p in parts], text)
    else:
        raise CronError(f"cron {text!r}: expected 5 fields (cron) or 6-7 fields (Quartz), got {len(parts)}")
    return " ".join(fields)


def _from_quartz(parts: list[str], text: str) -> list[str]:
    second, *rest = parts
    if len(rest) == 6:
        year = rest.pop()
        if year not in ("*", "?"):
            raise CronError(f"cron {text!r}: a year field ({year}) cannot be scheduled by Dagster; use '*'")
    if second not in ("0", "00"):
        raise CronError(f"cron {text!r}: seconds must be 0, Dagster schedules run at minute granularity")
    dom, dow = rest[2], rest[4]
    if dom == "?" and dow == "?":
        raise CronError(f"cron {text!r}: day-of-month and day-of-week cannot both be '?'")
    try:
        return [_normalize(p, i, quartz=True) for i, p in enumerate(rest)]
    except CronError as exc:
        raise CronError(f"cron {text!r}: {exc}") from None


def _normalize(part: str, index: int, *, quartz: bool) -> str:
    name, low, high = _CRON_FIELDS[index]
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
    out = []
    for item in part.split(","):
        out.append(_normalize_item(item, index, name, low, high, quartz))
    return ",".join(out)


def _normalize_item(item: str, index: int, name: str, low: int, high: int, quartz: bool) -> str:
    match = _ATOM.match(item)
    if not match:
        raise CronError(f"{name}: cannot read {item!r}")
    span, step = match.group(1), match.group(2)
    src_low, src_high = (1, 7) if (quartz and index == 4) else (low, 7 if index == 4 else high)
    if span == "*":
        start, end = None, None
    elif "-" in span:
        start, end = (int(x) for x in span.split("-"))
    else:
        start = end = int(span)
        if step is not None:  # Quartz / cron "a/b" means "from a to the end, every b"
            end = src_high
    for value in (start, end):
        if value is not None and not src_low <= value <= src_high:
            raise CronError(f"{name}: {value} is out of range {src_low}-{src_high}")
    if start is not None and end is not None and start > end:
        raise CronError(f"{name}: range {start}-{end} runs backwards")
    if step is not None and int(step) == 0:
        raise CronError(f"{name}: step 0 is not allowed")
    if index == 4:
        return _day_of_week(start, end, step, quartz)
    if start is None:
        return "*" + (f"/{step}" if step else "")
    body = str(start) if start == end and step is None else f"{start}-{end}"
    return body + (f"/{step}" if step else "")


def _day_of_week(start: int | None, end: int | None, step: str | None, quartz: bool) -> str:
    """Day-of-week as an explicit list of cron day numbers (0 = Sunday), so no numbering can leak."""
    if start is None:
        if step is None:
            return "*"
        start, end = (1, 7) if quartz else (0, 6)
    assert end is not None
    days = range(start, end + 1, int(step) if step else 1)
    cron_days = sorted({(d - 1) if quartz else (d % 7) for d in days})
    if cron_days == list(range(7)):
        return "*"
    return ",".join(str(d) for d in cron_days)
