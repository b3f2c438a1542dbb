"""The Dagster instance the CLI uses: ``$DAGSTER_HOME``, or ``./.dagster_home`` set up on first use."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dagster import DagsterInstance

DEFAULT_HOME_DIRNAME = ".dagster_home"
INSTANCE_CONFIG = "dagster.yaml"
"""The file Dagster reads in ``DAGSTER_HOME``."""
PROJECT_CONFIGS = ("dagster.local.yaml", INSTANCE_CONFIG)
"""The project's instance settings, copied into a new home; the first found wins. The project keeps
``dagster.local.yaml`` so that ``dagster dev`` started in its folder does not warn about a
``dagster.yaml`` it will not read."""


def ensure_dagster_home(cwd: Path | None = None) -> Path:
    """Make sure ``DAGSTER_HOME`` points at an existing folder and return it.

    When the variable is unset, ``<cwd>/.dagster_home`` is created and used, and the project's
    ``dagster.local.yaml`` (or ``dagster.yaml``) in ``cwd`` is copied into it as ``dagster.yaml``
    unless the folder already has one. Without either file nothing is written and Dagster uses its
    defaults.
    """
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        return home
    base = (cwd or Path.cwd()).resolve()
    home = base / DEFAULT_HOME_DIRNAME
    home.mkdir(parents=True, exist_ok=True)
    home_config = home / INSTANCE_CONFIG
    project_config = next((base / name for name in PROJECT_CONFIGS if (base / name).is_file()), None)
    if project_config is not None and not home_config.exists():
        shutil.copyfile(project_config, home_config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance() -> DagsterInstance:
    """The persistent instance of :func:`ensure_dagster_home` (runs started here show in the UI)."""
    ensure_dagster_home()
    return DagsterInstance.get()
