"""Addresses of the history view's pages, for links from Dagster's metadata and descriptions."""

from __future__ import annotations

import os
from urllib.parse import quote

HISTORY_URL_ENV = "SYNC_PIPELINES_HISTORY_URL"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3001


def history_url() -> str:
    """``$SYNC_PIPELINES_HISTORY_URL`` (e.g. behind a proxy), else the view ``sync-pipelines ui`` serves."""
    return os.environ.get(HISTORY_URL_ENV, "").strip().rstrip("/") or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def run_url(run_id: str) -> str:
    """The page of one run: counts, per-entity status, records and downloads."""
    return f"{history_url()}/runs/{quote(run_id, safe='')}"


def sync_url(name: str) -> str:
    """The page of one sync: what it does and its run history."""
    return f"{history_url()}/syncs/{quote(name, safe='')}"


def conflicts_url(name: str) -> str:
    """The page of one sync's open conflicts, each with Keep source / Keep target."""
    return f"{sync_url(name)}/conflicts"
