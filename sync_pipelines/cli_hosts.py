"""Command-line options of host-metrics syncs: a host list, a host list file, a time range; per-host output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sync_pipelines.config import SyncConfig
from sync_pipelines.config.elasticsearch import check_time_range
from sync_pipelines.connectors.cmdb import CmdbWriter
from sync_pipelines.engine.host_files import parse_host_list
from sync_pipelines.engine.host_metrics import is_host_metrics


def host_run_config(
    cfg: SyncConfig, hosts: tuple[str, ...], hosts_file: Path | None, time_range: str | None
) -> dict[str, Any]:
    """The extra run config of ``run --host/--hosts-file/--time-range``; raises click.UsageError when misused."""
    if not (hosts or hosts_file or time_range):
        return {}
    if not is_host_metrics(cfg):
        raise click.UsageError(f"--host, --hosts-file and --time-range are for host-metrics syncs; {cfg.name} is not")
    extra: dict[str, Any] = {}
    if time_range:
        try:
            extra["query_time_range"] = check_time_range(time_range)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--time-range") from None
    ips = list(hosts)
    if hosts_file is not None:
        parsed = parse_host_list(hosts_file.read_text(encoding="utf-8", errors="replace"))
        for line in parsed.invalid:
            click.echo(f"{hosts_file}: {line}; skipped", err=True)
        ips += parsed.ips
        if not ips:
            raise click.UsageError(f"{hosts_file}: no valid host IP")
    if ips:
        extra["host_ip_list"] = list(dict.fromkeys(ips))
    return extra


def print_host_results(cfg: SyncConfig, run_id: str) -> None:
    """One line per host the run recorded: IP, status, server_resources action, error."""
    if not is_host_metrics(cfg):
        return
    try:
        rows = CmdbWriter(cfg).host_results(run_id)
    except Exception as exc:  # the run's own report already says what failed
        click.echo(f"  (host results unavailable: {exc})", err=True)
        return
    for row in rows:
        error = f"  {row['error']}" if row["error"] else ""
        click.echo(f"  {row['host_ip']:<16} {row['status']:<12} {row['action']:<10}{error}")


__all__ = ["host_run_config", "print_host_results"]
