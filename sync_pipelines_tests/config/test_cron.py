"""Cron conversion: 5-field cron as is, Quartz cron to what Dagster runs, and what is refused."""

from __future__ import annotations

from datetime import datetime
from itertools import islice

import pytest
from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string
from hypothesis import given
from hypothesis import strategies as st

from sync_pipelines.config import to_dagster_cron
from sync_pipelines.errors import CronError

START = datetime(2024, 1, 1).timestamp()
QUARTZ_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # Quartz 1..7
# datetime.weekday() of each Quartz day number: 1 = Sunday .. 7 = Saturday.
QUARTZ_TO_WEEKDAY = {1: 6, 2: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5}

CRON_CASES = [
    # 5-field cron is kept as written...
    ("0 2 * * *", "0 2 * * *"),
    ("*/5 * * * *", "*/5 * * * *"),
    ("30 6 1,15 * *", "30 6 1,15 * *"),
    ("0 9-17/2 * * *", "0 9-17/2 * * *"),
    ("15 10 1-31/2 * *", "15 10 1-31/2 * *"),
    ("  0   2 * *  * ", "0 2 * * *"),
    # ...except names and day-of-week, which become explicit numbers (0 = Sunday, 7 = Sunday too).
    ("0 9 * * 1-5", "0 9 * * 1,2,3,4,5"),
    ("0 9 * * MON-FRI", "0 9 * * 1,2,3,4,5"),
    ("0 9 * * sun", "0 9 * * 0"),
    ("0 0 * * 7", "0 0 * * 0"),
    ("0 0 * * 5-7", "0 0 * * 0,5,6"),
    ("0 0 * * 0-6", "0 0 * * *"),
    ("0 0 * * */2", "0 0 * * 0,2,4,6"),
    ("0 0 * * 1/2", "0 0 * * 1,3,5"),
    ("0 0 * * 5/1", "0 0 * * 5,6"),
    ("0 0 * * 1-7/2", "0 0 * * 0,1,3,5"),
    ("0 0 * * 0,1/1", "0 0 * * *"),
    ("0 0 1 JAN,JUL *", "0 0 1 1,7 *"),
    ("0 0 29 2 *", "0 0 29 2 *"),
]

QUARTZ_CASES = [
    ("0 0 2 * * ?", "0 2 * * *"),
    ("0 0 2 ? * *", "0 2 * * *"),
    ("00 00 02 * * ?", "0 2 * * *"),
    ("0 30 8 * * ? *", "30 8 * * *"),
    ("0 30 8 * * ? ?", "30 8 * * *"),
    # Minute and hour steps: Quartz "a/b" means from a to the end of the range, every b.
    ("0 0/15 * * * ?", "0-59/15 * * * *"),
    ("0 5/15 * * * ?", "5-59/15 * * * *"),
    ("0 */10 * * * ?", "*/10 * * * *"),
    ("0 0 8-18/2 * * ?", "0 8-18/2 * * *"),
    ("0 0 0/6 * * ?", "0 0-23/6 * * *"),
    # Day-of-week: Quartz counts 1 = SUN .. 7 = SAT, cron 0 = SUN .. 6 = SAT.
    ("0 0 12 ? * 1", "0 12 * * 0"),
    ("0 0 12 ? * 7", "0 12 * * 6"),
    ("0 0 12 ? * 2-6", "0 12 * * 1,2,3,4,5"),
    ("0 0 12 ? * MON-FRI", "0 12 * * 1,2,3,4,5"),
    ("0 0 12 ? * mon-fri", "0 12 * * 1,2,3,4,5"),
    ("0 0 12 ? * 1,7", "0 12 * * 0,6"),
    ("0 0 12 ? * SUN,SAT", "0 12 * * 0,6"),
    ("0 0 12 ? * MON,WED,FRI", "0 12 * * 1,3,5"),
    ("0 0 12 ? * 1/2", "0 12 * * 0,2,4,6"),
    ("0 0 12 ? * 2/3", "0 12 * * 1,4"),
    ("0 0 12 ? * */2", "0 12 * * 0,2,4,6"),
    ("0 0 12 ? * 1-7", "0 12 * * *"),
    ("0 0 12 ? * 6-7,1", "0 12 * * 0,5,6"),
    ("0 30 8 ? * MON-FRI *", "30 8 * * 1,2,3,4,5"),
    # Months by name or number; day-of-month with `?` in day-of-week.
    ("0 0 0 1 JAN-MAR,DEC ?", "0 0 1 1-3,12 *"),
    ("0 0 0 1 1/3 ?", "0 0 1 1-12/3 *"),
    ("0 0 6 1,15 * ?", "0 6 1,15 * *"),
    ("0 0 0 31 * ?", "0 0 31 * *"),
    ("0 0 0 30 FEB,APR ?", "0 0 30 2,4 *"),
]

REJECTED = [
    # Quartz forms that Dagster cannot keep.
    ("30 0 2 * * ?", "seconds must be 0"),
    ("*/10 * * * * ?", "seconds must be 0"),
    ("0 0 2 L * ?", "'L' (last)"),
    ("0 0 2 LW * ?", "'L' (last)"),
    ("0 0 2 15W * ?", "'W' (nearest weekday)"),
    ("0 0 2 ? * 6L", "'L' (last)"),
    ("0 0 2 ? * FRIL", "'L' (last)"),
    ("0 0 2 ? * 6#3", "'#' (nth weekday)"),
    ("0 0 2 * * ? 2025", "a year field (2025)"),
    ("0 0 2 * * ? 2024-2030", "a year field"),
    ("0 0 2 ? * ?", "cannot both be '?'"),
    ("0 0 2 1 * MON", "set day-of-month or day-of-week, and '?' in the other"),
    ("0 ? 2 * * *", "'?' is only allowed in day-of-month or day-of-week"),
    # Field counts.
    ("", "got 0"),
    ("0 2 * *", "got 4"),
    ("0 0 0 2 * * ? *", "got 8"),
    ("@daily", "got 1"),
    # Values out of range, backwards or unreadable.
    ("60 * * * *", "minute: 60 is out of range 0-59"),
    ("0 24 * * *", "hour: 24 is out of range 0-23"),
    ("0 0 0 32 * ?", "day-of-month: 32 is out of range 1-31"),
    ("0 0 0 0 * ?", "day-of-month: 0 is out of range 1-31"),
    ("0 0 0 ? 13 *", "month: 13 is out of range 1-12"),
    ("0 0 0 ? * 0", "day-of-week: 0 is out of range 1-7"),
    ("0 0 0 ? * 8", "day-of-week: 8 is out of range 1-7"),
    ("0 0 * * 8", "day-of-week: 8 is out of range 0-7"),
    ("0 5-1 * * *", "range 5-1 runs backwards"),
    ("0 0 0 ? * FRI-MON", "range 6-2 runs backwards"),
    ("*/0 * * * *", "step 0 is not allowed"),
    ("abc * * * *", "minute: cannot read 'ABC'"),
    ("0 -1 * * *", "hour: cannot read '-1'"),
    ("0 0 * * MONDAY", "cannot read 'MONDAY'"),
    # A date that never comes: Dagster refuses the first, the second would never run.
    ("0 0 31 2 *", "day-of-month 31 does not occur in month(s) 2"),
    ("0 0 0 30 FEB ?", "day-of-month 30 does not occur in month(s) 2"),
    ("0 0 31 4,6 *", "day-of-month 31 does not occur in month(s) 4,6"),
]


def ticks(cron: str, count: int = 40) -> list[datetime]:
    return list(islice(cron_string_iterator(START, cron, "UTC"), count))


@pytest.mark.parametrize(("expression", "expected"), CRON_CASES + QUARTZ_CASES)
def test_conversion(expression: str, expected: str) -> None:
    assert to_dagster_cron(expression) == expected


@pytest.mark.parametrize(("expression", "expected"), CRON_CASES + QUARTZ_CASES)
def test_converted_expressions_are_accepted_by_dagster(expression: str, expected: str) -> None:
    assert is_valid_cron_string(to_dagster_cron(expression))


@pytest.mark.parametrize(("expression", "_"), CRON_CASES)
def test_cron_conversion_keeps_the_schedule(expression: str, _: str) -> None:
    """Rewriting names and day-of-week numbers changes the text, never the run times."""
    original = " ".join(expression.split())
    assert is_valid_cron_string(original)
    assert ticks(to_dagster_cron(expression)) == ticks(original)


@pytest.mark.parametrize(
    ("expression", "quartz_days"),
    [
        ("0 0 12 ? * 1", {1}),
        ("0 0 12 ? * 2-6", {2, 3, 4, 5, 6}),
        ("0 0 12 ? * SUN,SAT", {1, 7}),
        ("0 0 12 ? * 1/2", {1, 3, 5, 7}),
        ("0 0 12 ? * THU", {5}),
    ],
)
def test_quartz_day_of_week_runs_on_the_right_days(expression: str, quartz_days: set[int]) -> None:
    run_days = {tick.weekday() for tick in ticks(to_dagster_cron(expression))}
    assert run_days == {QUARTZ_TO_WEEKDAY[d] for d in quartz_days}


@pytest.mark.parametrize(("expression", "message"), REJECTED)
def test_rejected(expression: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        to_dagster_cron(expression)
    assert message in str(caught.value)
    assert str(caught.value).startswith("cron ")


def test_cron_error_is_a_value_error() -> None:
    # Pydantic turns a ValueError raised in a validator into a field error of the config.
    assert issubclass(CronError, ValueError)


@st.composite
def quartz_day_of_week(draw: st.DrawFn) -> tuple[str, set[int]]:
    """A Quartz day-of-week field (numbers or names, lists, ranges, steps) and the days it means."""
    items: list[str] = []
    days: set[int] = set()
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(1, 7))
        end = draw(st.integers(start, 7))
        step = draw(st.one_of(st.none(), st.integers(1, 7)))
        as_name = draw(st.booleans())
        text = QUARTZ_DAY_NAMES[start - 1] if as_name else str(start)
        if end != start:
            text += "-" + (QUARTZ_DAY_NAMES[end - 1] if as_name else str(end))
        elif step is not None:
            end = 7  # "a/b": from a to Saturday
        if step is not None:
            text += f"/{step}"
        items.append(text)
        days.update(range(start, end + 1, step or 1))
    return ",".join(items), days


@given(quartz_day_of_week(), st.integers(0, 59), st.integers(0, 23))
def test_any_quartz_day_of_week_converts_to_the_same_days(field: tuple[str, set[int]], minute: int, hour: int) -> None:
    text, days = field
    converted = to_dagster_cron(f"0 {minute} {hour} ? * {text}")

    assert is_valid_cron_string(converted)
    dow = converted.split()[4]
    cron_days = set(range(7)) if dow == "*" else {int(d) for d in dow.split(",")}
    assert cron_days == {d - 1 for d in days}


@st.composite
def cron_day_of_week(draw: st.DrawFn) -> tuple[str, set[int]]:
    """A 5-field cron day-of-week field (0-7, 0 and 7 = Sunday; ranges, steps, lists) and its days."""
    items = []
    days: set[int] = set()
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(0, 7))
        end = draw(st.integers(start, 7))
        step = draw(st.one_of(st.none(), st.integers(1, 6)))
        items.append((str(start) if end == start else f"{start}-{end}") + (f"/{step}" if step else ""))
        if end == start and step is not None:
            end = max(start, 6)  # "a/b": from a to Saturday
        days.update(d % 7 for d in range(start, end + 1, step or 1))
    return ",".join(items), days


@given(cron_day_of_week())
def test_any_cron_day_of_week_converts_to_the_same_days(field: tuple[str, set[int]]) -> None:
    # Compared with a plain reading of the field rather than with Dagster's parser, which expands
    # some open-ended steps oddly (it reads "6/1" as every day); the explicit list avoids that.
    text, days = field
    converted = to_dagster_cron(f"0 0 * * {text}")

    assert is_valid_cron_string(converted)
    dow = converted.split()[4]
    assert (set(range(7)) if dow == "*" else {int(d) for d in dow.split(",")}) == days
