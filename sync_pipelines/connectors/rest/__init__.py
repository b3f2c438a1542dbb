"""HTTP API sources (``kind: rest``): a client with transport retries, paginators, auth and the reader.

Modules: :mod:`.auth` (one class per auth type), :mod:`.paginators` (one class per paginator type),
:mod:`.retry` (urllib3 retries honouring ``Retry-After``), :mod:`.client` (pages and readable errors),
:mod:`.records` (JSON records to Arrow columns), :mod:`.reader` (the source reader) and :mod:`.check`
(the connection check).
"""

from sync_pipelines.connectors.rest.reader import RestReader

__all__ = ["RestReader"]
