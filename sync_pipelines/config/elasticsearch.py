"""Typed models of Elasticsearch sources (host metrics, raw documents) and of the CMDB target.

Kept apart from ``models.py`` so that the SQL models stay small; ``models.py`` adds these to its
``kind`` unions.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sync_pipelines.config.identifiers import check_optional_identifier
from sync_pipelines.config.urls import check_http_port, check_url, has_http_credentials

_RANGE_RE = re.compile(r"^([1-9][0-9]{0,5})([mhdw])$")
_RANGE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

DEFAULT_GROUP = "DB组"
"""The seed's default `group` value for a group full sync."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_time_range(value: str) -> str:
    """Validate a relative range such as ``7d``, ``30d``, ``1h``, ``24h`` (units m, h, d, w).

    Raises:
        ValueError: naming the value and the accepted forms.
    """
    if not isinstance(value, str) or not _RANGE_RE.match(value.strip()):
        raise ValueError(
            f"invalid time range {value!r}: expected a positive number and a unit m, h, d or w (e.g. 7d, 30d, 1h, 24h)"
        )
    return value.strip()


def time_range_delta(value: str) -> dt.timedelta:
    """The length of a range accepted by :func:`check_time_range`."""
    match = _RANGE_RE.match(check_time_range(value))
    assert match is not None
    return dt.timedelta(**{_RANGE_UNITS[match.group(2)]: int(match.group(1))})


def es_date_math(value: str) -> str:
    """The Elasticsearch date-math lower bound of a range: ``30d`` -> ``now-30d``."""
    return f"now-{check_time_range(value)}"


class HostSelection(StrEnum):
    """Which hosts a host-metrics run queries when no host list is given."""

    POOL = "pool"
    """The hosts registered in the CMDB's `hosts_pool` (the seed's scheduled sync)."""
    GROUP = "group"
    """Every host of the `group` value in Elasticsearch; new ones are registered (the seed's full sync)."""


class EsConnection(_Model):
    """Where and how to reach an Elasticsearch cluster."""

    endpoint: str = Field(
        description="Cluster URL, e.g. `https://es.example.com:9200`. `${ENV}` references allowed; a user and "
        "password written in it (`https://user:${ES_PASSWORD}@es.example.com:9200`) are sent as basic auth."
    )
    index: str = Field(
        description="Index pattern searched, e.g. `data-zabbix-host-monitor-*` (or `cluster*:...` across clusters)."
    )
    username: str | None = Field(default=None, description="Basic-auth user (`${ENV}` allowed).")
    password: str | None = Field(default=None, description="Basic-auth password; use a `${ENV}` reference.")
    api_key: str | None = Field(
        default=None, description="API key (instead of user/password); use a `${ENV}` reference."
    )
    verify_certs: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_certs: str | None = Field(default=None, description="Path of a CA bundle for the server's certificate.")
    request_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds to wait for one search before it counts as timed out."
    )

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "${")):
            raise ValueError(f"endpoint {value!r} must start with http:// or https://")
        return check_http_port(value)

    @model_validator(mode="after")
    def _credentials_once(self) -> EsConnection:
        if has_http_credentials(self.endpoint) and (self.username or self.password or self.api_key):
            raise ValueError(
                "the endpoint holds a user and password, and `username`/`password`/`api_key` are set too: "
                "give the credentials once"
            )
        return self


class HostMetricFields(_Model):
    """Names of the fields of a host-metrics document (keyword fields for host and group)."""

    host: str = Field(default="hostIp", description="Keyword field holding the host IP (use `x.keyword` for text).")
    host_name: str = Field(default="hostName", description="Field holding the host name.")
    group: str = Field(default="group", description="Keyword field holding the host group (e.g. `DB组`).")
    timestamp: str = Field(default="@timestamp", description="Date field of the data point.")
    cpu: str = Field(default="cpu", description="Numeric CPU usage field.")
    memory: str = Field(default="memory", description="Numeric memory usage field.")
    disk: str = Field(default="disk", description="Numeric disk space field.")


class HostFileDrop(_Model):
    """A folder watched for host list files (one IP per line; blank lines and `#` comments allowed)."""

    folder: str = Field(description="Folder to watch; finished files move to its `processed/` or `failed/`.")
    pattern: str = Field(default="*.txt", description="Glob of the host list files in `folder`.")
    interval_s: int = Field(default=30, ge=5, le=86_400, description="Seconds between two looks at the folder.")
    enabled: bool = Field(default=True, description="Default status of the sensor; the UI toggle still works.")


class ElasticsearchHostsSource(EsConnection):
    """Per-host resource metrics aggregated in Elasticsearch: one row per host with its status."""

    kind: Literal["elasticsearch_hosts"] = "elasticsearch_hosts"
    query_time_range: str = Field(default="30d", description="How far back to aggregate: 7d, 30d, 1h, 24h...")
    hosts: HostSelection = Field(
        default=HostSelection.POOL,
        description="`pool`: the hosts of `hosts_pool`; `group`: every host of `group` in Elasticsearch, "
        "registering new ones. A run's `host_ip_list` overrides both; its `full_sync` forces `group`.",
    )
    group: str = Field(default=DEFAULT_GROUP, description="Group value a group sync discovers hosts for.")
    max_hosts: int = Field(
        default=10_000, ge=1, le=65_536, description="Most hosts a group discovery may return; more fails the run."
    )
    max_concurrency: int = Field(default=10, ge=1, le=100, description="Hosts queried at the same time.")
    fields: HostMetricFields = Field(default_factory=HostMetricFields, description="Document field names.")
    host_files: HostFileDrop | None = Field(
        default=None, description="Start one run per host list file dropped into a folder (a sensor)."
    )

    _range = field_validator("query_time_range")(lambda cls, v: check_time_range(v))


class ElasticsearchSource(EsConnection):
    """Raw documents of an index pattern, read with a point in time and `search_after`.

    Columns are `_id` plus the mapped fields (dotted paths for objects). An incremental sync's
    `cursor` must be a date or numeric field; ties on it are resolved with the `_id`s already read.
    """

    kind: Literal["elasticsearch"] = "elasticsearch"
    query_time_range: str | None = Field(
        default=None, description="Only documents whose `time_field` is within this range (e.g. 30d)."
    )
    time_field: str | None = Field(
        default=None, description="Date field `query_time_range` applies to (defaults to the sync's `cursor`)."
    )
    keep_alive: str = Field(default="2m", description="How long the point in time stays open between two pages.")

    _range = field_validator("query_time_range")(lambda cls, v: v if v is None else check_time_range(v))


class CmdbTarget(_Model):
    """The CMDB: `hosts_pool` (registered hosts) and `server_resources` (latest resources per host)."""

    kind: Literal["cmdb"] = "cmdb"
    url: str = Field(description="SQLAlchemy URL of the CMDB database. `${ENV}` references allowed.")
    table: str = Field(default="server_resources", description="Resources table, upserted by `pool_id`.")
    hosts_table: str = Field(default="hosts_pool", description="Registered hosts: `id`, `host_ip`, `host_name`.")
    db_schema: str | None = Field(default=None, alias="schema", description="Database schema of both tables.")
    create: bool = Field(default=True, description="Create missing tables with the seed's columns.")

    _url = field_validator("url")(lambda cls, v: check_url(v))
    _names = field_validator("table", "hosts_table", "db_schema")(lambda cls, v: check_optional_identifier(v))

    @property
    def key(self) -> list[str]:
        """The resources table's key: one row per registered host."""
        return ["pool_id"]


__all__ = [
    "DEFAULT_GROUP",
    "CmdbTarget",
    "ElasticsearchHostsSource",
    "ElasticsearchSource",
    "EsConnection",
    "HostFileDrop",
    "HostMetricFields",
    "HostSelection",
    "check_time_range",
    "es_date_math",
    "time_range_delta",
]
