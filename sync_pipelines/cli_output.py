"""What a CLI run prints on stderr: Dagster's log lines, without the failure records the summary repeats.

A step that fails on a handled error (``dagster.Failure`` with a one-line description naming the
sync, the stage and the cause) makes Dagster's console logger print the failure with its stack
trace, the run's failure with the same message, and a line per step left out. The CLI's own summary
already prints that description as ``error: ...``, so by default those records are dropped, and any
other ``Stack Trace:`` block is cut; ``run -v`` prints them all.
The full trace always stays in the run's event log.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, TextIO

_REPEATED = (" - STEP_FAILURE - ", " - RUN_FAILURE - ", "were not executed:", "failed: ['")
"""Records the summary repeats: the step and run failures, and the steps skipped after them."""
_TRACE = "\nStack Trace:"


class TraceFilter:
    """A text stream passing on what is written to it, minus step-failure records and stack traces."""

    def __init__(self, target: TextIO):
        self._target = target

    def write(self, text: str) -> int:
        """Pass ``text`` on (one log record per call, as logging handlers write) unless it is filtered out."""
        if not any(marker in text for marker in _REPEATED):
            head, cut, _ = text.partition(_TRACE)
            self._target.write(head + ("\n" if cut else ""))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


@contextlib.contextmanager
def quiet_failures(verbose: bool) -> Iterator[None]:
    """Filter stderr through :class:`TraceFilter` for the duration, unless ``verbose``."""
    if verbose:
        yield
        return
    with contextlib.redirect_stderr(TraceFilter(sys.stderr)):
        yield


__all__ = ["TraceFilter", "quiet_failures"]
