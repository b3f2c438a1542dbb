"""The error taxonomy. Orchestration maps these to retry, fail or report; messages name what failed."""

from __future__ import annotations


class SyncError(Exception):
    """Base class of every error sync_pipelines raises on purpose."""


class ConfigError(SyncError):
    """One or more sync configurations are invalid. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class SecretError(ConfigError):
    """A ``${VAR}`` reference names an environment variable that is not set."""


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


class StagingError(SyncError):
    """The staging folder cannot be written or read."""


class DeleteGuardError(SyncError):
    """A full sync would delete more of the target than ``max_delete_ratio`` allows."""


class ConcurrentRunError(SyncError):
    """Another run of the same sync holds its lease, or committed after this run read its source."""


class FailureRatioExceeded(SyncError):
    """More records failed than ``max_failure_ratio`` allows."""
