"""The JSON Schema of a sync configuration file, generated from the pydantic models.

Editors use it for completion and inline errors (the YAML language server reads a
``# yaml-language-server: $schema=<path>`` comment). The schema describes the file as the loader
accepts it, including the shorthand ``target_column: source_column`` in ``mapping``. Checks that
span several fields (e.g. ``cursor`` needs ``mode: incremental``) are left to ``sync-pipelines validate``.
"""

from __future__ import annotations

import copy
from typing import Any

from sync_pipelines.config.models import SyncConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILENAME = "sync-config.schema.json"
"""Conventional file name of the schema in a project (``sync-pipelines schema > sync-config.schema.json``)."""


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one sync configuration file."""
    schema = copy.deepcopy(SyncConfig.model_json_schema(by_alias=True))
    schema["$schema"] = SCHEMA_DIALECT
    schema["title"] = "sync_pipelines sync configuration"
    mapping = schema["properties"]["mapping"]
    mapping["additionalProperties"] = {
        "anyOf": [
            {"type": "string", "description": "Shorthand for `{source: <column>}`."},
            mapping["additionalProperties"],
        ]
    }
    # The loader needs `kind` to tell source and target kinds apart, although the models default it.
    for union in ("source", "target"):
        for ref in schema["properties"][union].get("oneOf", []):
            definition = schema["$defs"][ref["$ref"].rsplit("/", 1)[-1]]
            required = definition.setdefault("required", [])
            if "kind" not in required:
                required.insert(0, "kind")
    return schema


__all__ = ["SCHEMA_FILENAME", "json_schema"]
