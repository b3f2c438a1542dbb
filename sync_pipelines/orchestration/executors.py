"""Which executor runs the steps of a sync: in the run's own process, or on Celery workers.

``SYNC_PIPELINES_EXECUTOR`` chooses it for the whole code location, read when the definitions load:

- ``in_process`` (the default): the three steps run one after the other in the run's process;
- ``celery``: each step is sent to a Celery broker and executed by whichever ``sync-pipelines
  worker`` takes it (:mod:`dagster_celery`; install ``sync_pipelines[celery]``).

The Celery executor needs a persistent Dagster instance whose storages every worker reaches
(PostgreSQL), and step outputs and staged batches on a store every worker sees (the same folder
on one machine, a shared one across machines). The broker is ``SYNC_PIPELINES_CELERY_BROKER``
(default: the RabbitMQ of this machine); the variable is resolved when a run starts, so a broker
password never lands in a definition or in the UI. ``SYNC_PIPELINES_CELERY_QUEUE`` (default
``dagster``) lets several deployments share one broker: steps go to that queue, and
``sync-pipelines worker`` consumes it.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any

from dagster import ExecutorDefinition, in_process_executor

from sync_pipelines.errors import ExecutorSettingError

EXECUTOR_ENV = "SYNC_PIPELINES_EXECUTOR"
BROKER_ENV = "SYNC_PIPELINES_CELERY_BROKER"
BACKEND_ENV = "SYNC_PIPELINES_CELERY_BACKEND"
QUEUE_ENV = "SYNC_PIPELINES_CELERY_QUEUE"
DEFAULT_BROKER = "pyamqp://guest@127.0.0.1:5672//"
"""RabbitMQ on this machine, as ``rabbitmq-server`` starts it (user ``guest``)."""
DEFAULT_BACKEND = "rpc://"
"""Step results travel back over the broker itself (AMQP reply queues): nothing else to run."""
DEFAULT_QUEUE = "dagster"
"""dagster-celery's queue, where steps go unless ``SYNC_PIPELINES_CELERY_QUEUE`` names another."""


class ExecutorKind(StrEnum):
    """The values of ``SYNC_PIPELINES_EXECUTOR``."""

    IN_PROCESS = "in_process"
    CELERY = "celery"


def executor_kind() -> ExecutorKind:
    """The executor ``SYNC_PIPELINES_EXECUTOR`` asks for; ``in_process`` when unset or empty.

    Raises:
        ExecutorSettingError: the variable holds another value.
    """
    value = os.environ.get(EXECUTOR_ENV, "").strip().lower().replace("-", "_")
    if not value:
        return ExecutorKind.IN_PROCESS
    try:
        return ExecutorKind(value)
    except ValueError:
        choices = ", ".join(kind.value for kind in ExecutorKind)
        raise ExecutorSettingError(f"{EXECUTOR_ENV}={value!r}: expected one of {choices}") from None


def _env_or_default(variable: str, default: str) -> Any:
    """A ``StringSource`` value: read from ``variable`` when the run starts if it is set, else ``default``."""
    return {"env": variable} if os.environ.get(variable) else default


def celery_broker() -> str:
    """The broker URL workers and runs use: ``$SYNC_PIPELINES_CELERY_BROKER`` or :data:`DEFAULT_BROKER`."""
    return os.environ.get(BROKER_ENV) or DEFAULT_BROKER


def celery_backend() -> str:
    """The result backend URL: ``$SYNC_PIPELINES_CELERY_BACKEND`` or :data:`DEFAULT_BACKEND`."""
    return os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND


def celery_queue() -> str:
    """The queue steps are sent to and workers consume: ``$SYNC_PIPELINES_CELERY_QUEUE`` or :data:`DEFAULT_QUEUE`."""
    return os.environ.get(QUEUE_ENV) or DEFAULT_QUEUE


def _celery_executor() -> ExecutorDefinition:
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise ExecutorSettingError(
            f"{EXECUTOR_ENV}=celery needs dagster-celery: pip install 'sync_pipelines[celery]'"
        ) from None
    return celery_executor.configured(
        {
            "broker": _env_or_default(BROKER_ENV, DEFAULT_BROKER),
            "backend": _env_or_default(BACKEND_ENV, DEFAULT_BACKEND),
            "config_source": {"task_default_queue": celery_queue()},
        },
        description="Sends each step to a Celery broker; `sync-pipelines worker` processes execute them.",
    )


def sync_executor() -> ExecutorDefinition:
    """The executor of sync jobs (and of assets materialized from the asset graph), per ``SYNC_PIPELINES_EXECUTOR``.

    Raises:
        ExecutorSettingError: the variable is invalid, or asks for Celery without dagster-celery.
    """
    if executor_kind() is ExecutorKind.CELERY:
        return _celery_executor()
    return in_process_executor
