"""Give a process back the default handling of SIGTERM and SIGINT.

A shell started in the background (CI steps, ``nohup``-style launchers, some IDEs) starts its
children with SIGINT and SIGTERM ignored, and an ignored disposition is inherited across ``exec``.
A sync run started that way could not be stopped with Ctrl-C or ``kill``, and a Dagster run worker
could not be terminated from the UI. The CLI calls :func:`restore_default_signals` first thing;
``make`` targets use ``env --default-signal=TERM,INT``; test helpers pass it as ``preexec_fn``.
"""

from __future__ import annotations

import signal
import threading


def restore_default_signals() -> None:
    """SIGINT raises KeyboardInterrupt again and SIGTERM ends the process (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
