"""Give a process back the default handling of SIGTERM and SIGINT.

A shell started in the background (CI steps, ``nohup``-style launchers, some IDEs) starts its
children with SIGINT and SIGTERM ignored, and an ignored disposition is inherited across ``exec``.
A sync run started that way could not be stopped with Ctrl-C or ``kill``, and a Dagster run worker
could not be terminated from the UI. The CLI calls :func:`restore_default_signals` first thing;
``make`` targets use ``env --default-signal=TERM,INT``; test helpers pass it as ``preexec_fn``.

The servers the CLI starts (``dagster dev``, the demo's Elasticsearch-API server) are started with
:func:`dies_with_this_process`, which also makes them end when the CLI is killed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable


def restore_default_signals() -> None:
    """SIGINT raises KeyboardInterrupt again and SIGTERM ends the process (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


PR_SET_PDEATHSIG = 1
"""``prctl`` option (Linux): the signal a process receives when the thread that started it ends."""


def dies_with_this_process(*, new_session: bool = False) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen` so that the child never outlives this process.

    In the child: SIGTERM and SIGINT back to their default handling, a session (and process group)
    of its own when ``new_session``, and on Linux SIGTERM when this process dies, even by SIGKILL.
    The kernel sends that signal when the *thread* that started the child ends: start long-lived
    children from the main thread. A parent that died between the fork and ``prctl`` is caught by
    comparing the parent pid. Elsewhere than Linux, only an orderly stop of the parent stops the child.
    """
    parent = os.getpid()
    # Resolved here, in the parent: the child should not load libraries between fork and exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None

    def setup() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if new_session:
            os.setsid()
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)

    return setup
