"""The Dagster instance the CLI uses: ``$DAGSTER_HOME``, or ``./.dagster_home``, always configured.

Whatever the home folder, it gets the project's ``dagster.yaml`` when it has none (as ``make ui``
does), so a CLI run never falls back to Dagster's defaults (no run monitoring, no run retries,
telemetry on). Writing the file is logged once, on the ``sync_pipelines`` logger.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dagster import DagsterInstance

DEFAULT_HOME_DIRNAME = ".dagster_home"
INSTANCE_CONFIG = "dagster.yaml"
"""The file Dagster reads in ``DAGSTER_HOME``."""
PROJECT_CONFIGS = ("dagster.local.yaml", INSTANCE_CONFIG)
"""The project's instance settings, copied into a home that has none; the first found wins. The project
keeps ``dagster.local.yaml`` so that ``dagster dev`` started in its folder does not warn about a
``dagster.yaml`` it will not read."""
_SOURCE_CHECKOUT = Path(__file__).resolve().parents[2]
MINIMAL_INSTANCE_CONFIG = """\
# Written by sync_pipelines: no project dagster.local.yaml was found. See the project's README.
storage:
  sqlite:
    base_dir:
      env: DAGSTER_HOME
run_monitoring:
  enabled: true
telemetry:
  enabled: false
"""
"""Written when neither the working folder nor the source checkout has the project's settings."""

logger = logging.getLogger(__name__)


def project_instance_config(cwd: Path) -> str:
    """The project's instance settings: from ``cwd``, else from the source checkout, else a minimal set."""
    for folder in (cwd, _SOURCE_CHECKOUT):
        for name in PROJECT_CONFIGS:
            if (folder / name).is_file():
                return (folder / name).read_text(encoding="utf-8")
    return MINIMAL_INSTANCE_CONFIG


def ensure_instance_config(home: Path, cwd: Path) -> Path | None:
    """Write the project's ``dagster.yaml`` into ``home`` unless it has one; returns the file written, if any.

    Telemetry stays off unless the user turns it on in that file.
    """
    target = home / INSTANCE_CONFIG
    if target.exists():
        return None
    target.write_text(project_instance_config(cwd), encoding="utf-8")
    logger.warning("sync_pipelines: %s had no %s; wrote the project's instance settings there", home, INSTANCE_CONFIG)
    return target


def ensure_dagster_home(cwd: Path | None = None) -> Path:
    """Make sure ``DAGSTER_HOME`` points at an existing, configured folder and return it.

    When the variable is unset, ``<cwd>/.dagster_home`` is created and used. Either way the folder
    gets the project's ``dagster.yaml`` (:func:`ensure_instance_config`) unless it has one.
    """
    base = (cwd or Path.cwd()).resolve()
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
    else:
        home = base / DEFAULT_HOME_DIRNAME
        os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    ensure_instance_config(home, base)
    return home


def get_instance() -> DagsterInstance:
    """The persistent instance of :func:`ensure_dagster_home` (runs started here show in the UI)."""
    ensure_dagster_home()
    return DagsterInstance.get()
