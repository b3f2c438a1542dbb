"""Command-line options of host-metrics syncs: a host list, a host list file, a time range; per-host output.

``--host`` values and host-file lines follow the same rule (one IP address); per-host output comes from
the run's ``hosts`` table, so a dry run prints it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sync_pipelines.config import SyncConfig
from sync_pipelines.config.elasticsearch import check_time_range
from sync_pipelines.engine.host_files import parse_host_list
from sync_pipelines.kinds import Pipeline, kind_of
from sync_pipelines.kinds.host_metrics import HostOptions
from sync_pipelines.orchestration import RunReport


def host_run_config(
    cfg: SyncConfig, hosts: tuple[str, ...], hosts_file: Path | None, time_range: str | None
) -> dict[str, Any]:
    """The extra run config of ``run --host/--hosts-file/--time-range``; raises click.UsageError when misused."""
    if not (hosts or hosts_file or time_range):
        return {}
    if not issubclass(kind_of(cfg).options, HostOptions):
        raise click.UsageError(f"--host, --hosts-file and --time-range are for host-metrics syncs; {cfg.name} is not")
    extra: dict[str, Any] = {}
    if time_range:
        try:
            extra["query_time_range"] = check_time_range(time_range)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--time-range") from None
    ips = [_checked_host(value) for value in hosts]
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


def _checked_host(value: str) -> str:
    """One ``--host`` value, read by the rules of a host-file line: one IPv4 or IPv6 address."""
    parsed = parse_host_list(value)
    if parsed.invalid or len(parsed.ips) != 1:
        raise click.BadParameter(f"{value!r} is not an IP address (give one IPv4 or IPv6 address)", param_hint="--host")
    return parsed.ips[0]


def print_host_results(cfg: SyncConfig, report: RunReport) -> None:
    """One line per host of the run's ``hosts`` table (IP, status, resources action, error), dry runs included,
    then the hosts a group sync registered (or, in a dry run, would register) in hosts_pool."""
    if kind_of(cfg).pipeline is not Pipeline.HOSTS:
        return
    table = report.metadata.get("hosts")
    rows = [record.data for record in getattr(table, "records", [])]
    for row in rows:
        registered = "  registered" if row.get("registered") else ""
        error = f"  {row['error']}" if row.get("error") else ""
        click.echo(f"  {row['host_ip']:<16} {row['status']:<12} {row['action']:<10}{registered}{error}")
    total = int(report.metadata.get("hosts_total") or len(rows))
    if total > len(rows):
        click.echo(f"  ... and {total - len(rows)} more host(s): see _sync_host_results for run {report.run_id}")
    new = list(report.metadata.get("new_host_ip_list") or [])
    if new:
        verb = "would register" if report.dry_run else "registered"
        click.echo(f"  {verb} {len(new)} new host(s) in hosts_pool: {', '.join(new)}")


__all__ = ["host_run_config", "print_host_results"]
