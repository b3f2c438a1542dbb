"""The demo: what ``sync-pipelines demo`` and ``sync-pipelines ui`` start beside the syncs in ``syncs/``.

- ``sources``: the SQLite source databases of the SQL syncs (an ERP and a staff directory);
- ``hosts``: the CMDB of the host-metrics syncs and a local Elasticsearch-API server seeded with metrics;
- ``local_es``: that server (the ``noida-db`` binary), also used by the test suite.

Nothing here imports Dagster.
"""
