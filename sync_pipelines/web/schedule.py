"""The next time a sync's schedule fires, from the 5-field cron Dagster runs, in the schedule's timezone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

_NAMES = {
    3: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    4: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
SEARCH_DAYS = 5 * 366


def _number(text: str, index: int) -> int:
    names = _NAMES.get(index)
    if names and text.upper() in names:
        return names.index(text.upper()) + (1 if index == 3 else 0)
    return int(text)


def _item(item: str, index: int) -> set[int]:
    low, high = _RANGES[index]
    part, _, step_text = item.partition("/")
    step = int(step_text) if step_text else 1
    if part == "*":
        start, end = low, high
    elif "-" in part:
        first, last = part.split("-", 1)
        start, end = _number(first, index), _number(last, index)
    else:
        start = _number(part, index)
        end = high if step_text else start
    return set(range(start, end + 1, step))


def cron_values(cron: str) -> list[set[int]]:
    """The values each of the five fields allows (day of week: 0 = Sunday; 7 is read as 0)."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"cron {cron!r}: expected 5 fields, found {len(fields)}")
    values = [set().union(*(_item(item, i) for item in field.split(","))) for i, field in enumerate(fields)]
    if 7 in values[4]:
        values[4] = (values[4] - {7}) | {0}
    return values


def _day_matches(day: dt.date, values: list[set[int]], dom_any: bool, dow_any: bool) -> bool:
    if day.month not in values[3]:
        return False
    dom_ok = day.day in values[2]
    dow_ok = (day.isoweekday() % 7) in values[4]
    if dom_any or dow_any:
        return dom_ok and dow_ok
    return dom_ok or dow_ok  # cron: both day fields restricted means either may match


def next_fire(cron: str, timezone: str, after: dt.datetime) -> dt.datetime | None:
    """The first time after ``after`` (aware) that ``cron`` fires in ``timezone``, as an aware UTC time.

    None when it does not fire within five years (e.g. only on 30 February).
    """
    values = cron_values(cron)
    fields = cron.split()
    dom_any, dow_any = fields[2].startswith("*"), fields[4].startswith("*")
    zone = ZoneInfo(timezone)
    local = after.astimezone(zone)
    day = local.date()
    for _ in range(SEARCH_DAYS):
        if _day_matches(day, values, dom_any, dow_any):
            for hour in sorted(values[1]):
                for minute in sorted(values[0]):
                    at = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                    if at > local:
                        return at.astimezone(dt.UTC)
        day += dt.timedelta(days=1)
    return None
