"""Run the ``sync-pipelines`` command in a child process with the phase markers of ``fault_runner``.

Usage: ``python -m sync_pipelines_tests.support.cli_fault_runner [CLI ARGUMENTS]``. The run goes through
Dagster as any CLI run does; ``SYNC_FAULT_PAUSE_AT=<phase>:<n>`` pauses it there (see
``fault_runner``) so that a test can kill the whole CLI process.
"""

from __future__ import annotations

import sys

from sync_pipelines.cli import main
from sync_pipelines_tests.support import fault_runner

if __name__ == "__main__":
    fault_runner._install()
    main(sys.argv[1:])
