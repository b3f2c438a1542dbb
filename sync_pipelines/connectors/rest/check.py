"""The connection check of a ``rest`` source: reach the endpoint, authenticate, read one page, find the records."""

from __future__ import annotations

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.check import CheckContext, EndpointCheck
from sync_pipelines.connectors.compat import type_mismatches
from sync_pipelines.connectors.rest.reader import RestReader
from sync_pipelines.errors import CheckFailed


def check_rest_source(config: SyncConfig, result: EndpointCheck, context: CheckContext) -> None:
    """Read the first page: the endpoint answers, accepts the credentials and holds a list of JSON objects
    whose fields can be cast to the mapping's types.

    Raises:
        ConnectorError: the request failed (status or problem in the message).
        CheckFailed: a mapped field cannot be cast.
    """
    reader = RestReader(config)
    result.endpoint = reader.endpoint
    records = reader.source.records
    try:
        sample = reader.sample()
        result.passed.append("reached the endpoint and authenticated")
        where = f"`{records}`" if records else "the response"
        result.passed.append(f"read one page: {len(sample)} record(s) in {where}")
        types = reader.arrow_schema()
        context.source_types = types
        mismatches = type_mismatches(config, types)
        if mismatches:
            raise CheckFailed("; ".join(str(m) for m in mismatches))
        result.passed.append("field types can be cast")
    finally:
        reader.close()


__all__ = ["check_rest_source"]
