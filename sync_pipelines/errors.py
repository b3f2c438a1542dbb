"""The error taxonomy: every error class sync_pipelines defines. Orchestration maps these to retry,
fail or report; messages name what failed.

Most derive from :class:`SyncError`. A few are ``ValueError`` (a bad value given by the user or the
environment, checked where it is read); the history view's :class:`LaunchError` and the demo's
:class:`LocalEsError` are ``RuntimeError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class SyncError(Exception):
    """Base class of every error sync_pipelines raises on purpose."""


# ----------------------------------------------------------------------------- configuration


class ConfigError(SyncError):
    """One or more sync configurations are invalid. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class SecretError(ConfigError):
    """A ``${VAR}`` reference names an environment variable that is not set."""


class UnknownSyncError(SyncError):
    """Sync names that no configuration defines; the message, the same wherever a name is looked up,
    lists the known syncs."""

    def __init__(self, names: str | Sequence[str], known: Iterable[str]):
        self.names = [names] if isinstance(names, str) else list(names)
        self.known = sorted(known)
        what = f"sync {self.names[0]!r}" if len(self.names) == 1 else f"syncs {', '.join(map(repr, self.names))}"
        super().__init__(f"unknown {what}; known syncs: {', '.join(self.known) or '(none)'}")


class CronError(ValueError):
    """A cron expression that is malformed or that Dagster cannot run."""


class ExecutorSettingError(ValueError):
    """``SYNC_PIPELINES_EXECUTOR`` names no executor, or the one it names is not installed."""


# ----------------------------------------------------------------------------- connectors


class ConnectorError(SyncError):
    """A source or target failed. ``endpoint`` is a display form with credentials removed."""

    transient: bool = False

    def __init__(self, message: str, *, endpoint: str | None = None):
        self.endpoint = endpoint
        super().__init__(f"{endpoint}: {message}" if endpoint else message)


class TransientConnectorError(ConnectorError):
    """A failure worth retrying: connection refused, timeout, deadlock, lost connection."""

    transient = True


class PermanentConnectorError(ConnectorError):
    """A failure that a retry will not fix: bad credentials, missing table, invalid query."""


class SchemaDriftError(PermanentConnectorError):
    """The source lost a mapped column, or changed a type to one the mapping cannot cast."""


class CheckFailed(SyncError):
    """One verification of an endpoint failed; the message says which and why."""


# ----------------------------------------------------------------------------- runs


class StagingError(SyncError):
    """The staging folder cannot be written or read."""


class ConcurrentRunError(SyncError):
    """Another run of the same sync holds its lease, or committed after this run read its source."""


class RunCancelled(SyncError):
    """The run was asked to stop; everything committed so far stays consistent."""


class DeleteGuardError(SyncError):
    """A run would delete more of one side than ``max_delete_ratio`` allows; nothing was deleted."""

    def __init__(self, sync: str, *, deletes: int, total: int, max_ratio: float, side: str = "target"):
        self.sync, self.deletes, self.total, self.max_ratio, self.side = sync, deletes, total, max_ratio, side
        super().__init__(
            f"sync {sync}: refusing to delete {deletes} of {total} {side} rows "
            f"({deletes / total:.0%} > max_delete_ratio {max_ratio:.0%}); nothing was deleted"
        )


class FailureRatioExceeded(SyncError):
    """More records (or hosts) failed than ``max_failure_ratio`` allows."""

    def __init__(self, sync: str, *, failed: int, processed: int, max_ratio: float, unit: str = "records"):
        self.sync, self.failed, self.processed, self.max_ratio, self.unit = sync, failed, processed, max_ratio, unit
        super().__init__(f"sync {sync}: {failed} of {processed} {unit} failed, more than max_failure_ratio {max_ratio}")


class UnknownPartitionError(ValueError):
    """A partition was asked of a sync that has no such partition."""


class ConflictResolutionError(SyncError):
    """A resolution that cannot be applied (unknown or already resolved conflicts); nothing was changed."""


class SourcePollError(SyncError):
    """The source-change sensor could not read the source's high-water mark."""


class SweepError(SyncError):
    """Some ledgers could not be swept; ``closed`` lists the runs closed in the others."""

    def __init__(self, failures: list[str], closed: list[str]):
        self.failures = failures
        self.closed = closed
        super().__init__("; ".join(failures))


# ----------------------------------------------------------------------------- the history view


class BadQueryParameter(ValueError):
    """A query parameter the history view cannot use; the message names it, its value and what is allowed."""


class LaunchError(RuntimeError):
    """Dagster did not start the run: unreachable, or it refused the launch (its message says why)."""


# ----------------------------------------------------------------------------- the demo


class LocalEsError(RuntimeError):
    """The local server cannot be found or did not start."""
