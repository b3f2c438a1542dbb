"""The ``sync-pipelines`` command line: one module per command group, and ``shared`` for what they share.

- ``app``: the command group ``main`` (the console script) and its ``--config-dir``;
- ``configs``: ``validate``, ``list``, ``new`` and ``schema`` (``templates``: what ``new`` writes);
- ``run``: ``run`` and ``demo`` (``hosts``: the options and output of host-metrics runs);
- ``check``, ``status``, ``history`` (``history``, ``show``, ``stats``, ``export``), ``conflicts``,
  ``staging``, ``worker`` and ``ui``;
- ``shared``: exit codes, the configuration loader, the sync selector, the table renderer, shared options.
"""

from __future__ import annotations

from sync_pipelines.cli.app import main

__all__ = ["main"]
