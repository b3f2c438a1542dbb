"""The hand-written bad-input corpus: broken configuration files and host list files, each with its expected error.

A config case is ``(case id, YAML text, expected fragment of the error)``; every error must also name
the file. A host-file case is ``(case id, file content, expected invalid lines as (number, text))``.
"""

from __future__ import annotations

from typing import Any

import yaml

BASE: dict[str, Any] = {
    "name": "orders_sync",
    "source": {"kind": "sql", "url": "sqlite:///src.db", "table": "orders"},
    "target": {"kind": "sql", "url": "sqlite:///dst.db", "table": "wh_orders", "key": ["order_id"]},
    "mapping": {"order_id": "id", "customer": {"type": "string"}, "updated_at": {"type": "datetime"}},
    "mode": "incremental",
    "cursor": "updated_at",
}


def mutated(path: str, value: Any) -> str:
    """BASE with the dotted ``path`` set to ``value`` (``...`` removes it), as YAML."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return yaml.safe_dump(data, allow_unicode=True)


MALFORMED_YAML = [
    ("tab-indent", "name: a\n\tsource: x\n", "line 2: invalid YAML"),
    ("unclosed-bracket", "name: a\nmapping: [a, b\n", "invalid YAML"),
    ("unclosed-quote", 'name: "abc\nmode: full\n', "invalid YAML"),
    ("bad-indent", "name: a\n  source: b\n mode: c\n", "invalid YAML"),
    ("duplicate-key", "name: a\nname: b\n", "name"),
    ("scalar-doc", "just a string\n", "expected a mapping of sync settings, got str"),
    ("list-doc", "- a\n- b\n", "expected a mapping of sync settings, got list"),
    ("int-doc", "42\n", "expected a mapping of sync settings, got int"),
    ("empty-file", "", "file is empty"),
    ("comment-only", "# nothing here\n", "file is empty"),
    ("null-doc", "~\n", "file is empty"),
    ("colon-in-key", "name: a: b\n", "invalid YAML"),
    ("anchor-missing", "name: *missing\n", "invalid YAML"),
    ("two-docs", "name: a\n---\nname: b\n", "invalid YAML"),
    ("python-tag", "name: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
    ("binary-junk", "\x00\x01\x02name: a\n", "invalid YAML"),
]

WRONG_TYPES = [
    ("name-int", "name", 5, "name"),
    ("name-upper", "name", "Orders", "name"),
    ("name-space", "name", "orders sync", "name"),
    ("name-sql", "name", "x; DROP TABLE y", "name"),
    ("name-empty", "name", "", "name"),
    ("batch-size-str", "batch_size", "many", "batch_size"),
    ("batch-size-zero", "batch_size", 0, "batch_size"),
    ("batch-size-negative", "batch_size", -5, "batch_size"),
    ("batch-size-huge", "batch_size", 10**9, "batch_size"),
    ("batch-size-float", "batch_size", 2.5, "batch_size"),
    ("mode-unknown", "mode", "sometimes", "mode"),
    ("mode-int", "mode", 1, "mode"),
    ("max-failure-ratio-high", "max_failure_ratio", 1.5, "max_failure_ratio"),
    ("max-failure-ratio-negative", "max_failure_ratio", -0.1, "max_failure_ratio"),
    ("max-failure-ratio-str", "max_failure_ratio", "half", "max_failure_ratio"),
    ("max-delete-ratio-high", "max_delete_ratio", 2, "max_delete_ratio"),
    ("delete-missing-str", "delete_missing", "perhaps", "delete_missing"),
    ("source-not-mapping", "source", "sqlite:///x.db", "source"),
    ("source-kind-unknown", "source.kind", "ftp", "source"),
    ("source-url-int", "source.url", 12, "source"),
    ("source-url-list", "source.url", ["a"], "source"),
    ("source-table-and-query", "source.query", "SELECT 1", "set exactly one of `table` or `query`"),
    ("target-not-mapping", "target", [1, 2], "target"),
    ("target-kind-unknown", "target.kind", "excel", "target"),
    ("target-key-empty", "target.key", [], "target"),
    ("target-key-str-int", "target.key", [1], "target"),
    ("target-create-str", "target.create", "sometimes", "target"),
    ("mapping-list", "mapping", ["a", "b"], "mapping"),
    ("mapping-type-unknown", "mapping.customer", {"type": "money"}, "unknown type 'money'"),
    ("mapping-decimal-precision", "mapping.customer", {"type": "decimal(50,2)"}, "precision must be 1-38"),
    ("mapping-decimal-scale", "mapping.customer", {"type": "decimal(5,9)"}, "scale <= precision"),
    ("mapping-source-and-constant", "mapping.customer", {"source": "a", "constant": 1}, "not both"),
    ("mapping-int-spec", "mapping.customer", 5, "mapping"),
    ("filter-not-list", "filter", "id > 5", "filter"),
    ("filter-op-unknown", "filter", [{"column": "id", "op": "like", "value": "x"}], "filter"),
    ("filter-in-scalar", "filter", [{"column": "id", "op": "in", "value": 5}], "needs a list `value`"),
    ("filter-null-value", "filter", [{"column": "id", "op": "is_null", "value": 5}], "takes no `value`"),
    ("filter-eq-list", "filter", [{"column": "id", "op": "eq", "value": [1, 2]}], "needs a single `value`"),
    ("filter-no-column", "filter", [{"op": "eq", "value": 1}], "filter"),
    ("timezone-unknown", "timezone", "Mars/Olympus", "unknown timezone"),
    ("timezone-int", "timezone", 8, "timezone"),
    ("retry-negative", "retry.max_retries", -1, "retry"),
    ("retry-too-many", "retry.max_retries", 100, "retry"),
    ("retry-delay-str", "retry.delay_s", "soon", "retry"),
    ("history-store-str", "history.store_unchanged", "often", "history"),
    ("on-conflict-unknown", "on_conflict", "coin_flip", "on_conflict"),
    ("direction-unknown", "direction", "sideways", "direction"),
]

UNKNOWN_FIELDS = [
    ("top-typo", "batchsize", 5, "batchsize"),
    ("top-extra", "owner", "ops", "owner"),
    ("source-typo", "source.tabel", "x", "tabel"),
    ("source-password", "source.password", "hunter2", "password"),
    ("target-typo", "target.keys", ["id"], "keys"),
    ("mapping-spec-typo", "mapping.customer", {"sourse": "customer"}, "sourse"),
    ("schedule-typo", "schedule", {"cron": "0 2 * * *", "enabeld": True}, "enabeld"),
    ("retry-typo", "retry", {"max_retry": 2}, "max_retry"),
    ("history-typo", "history", {"store_unchange": True}, "store_unchange"),
]

MISSING = [
    ("no-name", "name", ..., "name"),
    ("no-source", "source", ..., "source"),
    ("no-target", "target", ..., "target"),
    ("no-mapping-key", "mapping.order_id", ..., "target.key: column(s) order_id are not in `mapping`"),
    ("no-target-key", "target.key", ..., "target"),
    ("no-target-table", "target.table", ..., "target"),
    ("no-source-url", "source.url", ..., "source"),
    ("no-source-table", "source.table", ..., "set exactly one of `table` or `query`"),
    ("no-cursor", "cursor", ..., "mode `incremental` needs a `cursor`"),
    ("key-not-mapped", "target.key", ["order_id", "missing_col"], "missing_col are not in `mapping`"),
    ("key-constant", "mapping.order_id", {"constant": 1}, "cannot be constants"),
    ("cursor-on-full", "mode", "full", "only used with mode `incremental`"),
    ("placeholder-unfilled", "source.table", "<fill in: source table>", "source.table"),
]

BAD_CRON = [
    "every day",
    "* * *",
    "61 * * * *",
    "* 25 * * *",
    "* * 32 * *",
    "* * * 13 *",
    "* * * * 8",
    "0 0 2 * * ? * *",
    "",
    "@sometimes",
    "*/0 * * * *",
    "0 0 2 ? * ?",
    "a b c d e",
    "-1 * * * *",
]

BAD_TIME_RANGES = ["30", "30x", "-5d", "0d", "d", "", "thirty days", "1.5d", "30 d", "1y2", "∞d", "30dd"]

SQL_IN_NAMES = [
    ("table-drop", "target.table", "wh; DROP TABLE wh_orders; --"),
    ("table-quote", "target.table", 'wh"orders'),
    ("table-single-quote", "target.table", "wh'orders"),
    ("column-drop", "mapping", {"order_id": "id", "x; DROP TABLE t": {"source": "customer"}}),
    ("column-quote", "mapping", {"order_id": "id", 'c"1': {"source": "customer"}}),
    ("source-column-sql", "mapping", {"order_id": "id", "c": {"source": "customer); DELETE FROM orders; --"}}),
    ("filter-column-sql", "filter", [{"column": "1=1 OR id", "op": "eq", "value": 1}]),
    ("filter-value-sql", "filter", [{"column": "id", "op": "eq", "value": "1' OR '1'='1"}]),
]

CMDB_SQL_IN_NAMES = [
    ("cmdb-table-drop", "table", "orders_copy; DROP TABLE x; --"),
    ("cmdb-hosts-quote", "hosts_table", 'hosts"pool'),
    ("cmdb-schema-space", "schema", "cmdb data"),
]
"""Names a CMDB target takes under the same rule as a SQL target: quoted data, never SQL."""

BAD_NAMES = [
    ("table-backtick", "target.table", "wh`orders", "contains a backtick"),
    ("table-empty", "target.table", "", "name is empty"),
    ("table-too-long", "target.table", "t" * 64, "longer than 63 bytes"),
    ("table-too-long-utf8", "target.table", "表" * 22, "longer than 63 bytes"),
    ("table-newline", "target.table", "wh\norders", "U+000A"),
    ("table-nul", "target.table", "wh\x00orders", "U+0000"),
    ("table-zero-width", "target.table", "wh\u200borders", "U+200B"),
    ("table-padded", "target.table", " wh_orders", "starts or ends with a space"),
    ("schema-backtick", "target.schema", "a`b", "target.schema"),
    ("source-table-tab", "source.table", "orders\t", "source.table"),
    ("key-control", "target.key", ["order_id", "x\x07"], "target.key"),
    ("mapping-name-backtick", "mapping", {"order_id": "id", "c`1": {"source": "customer"}}, "mapping"),
    ("mapping-source-newline", "mapping.customer", {"source": "cust\nomer"}, "mapping.customer.source"),
    ("cursor-backtick", "cursor", "updated`at", "cursor"),
    ("filter-column-empty", "filter", [{"column": "", "op": "eq", "value": 1}], "filter.0.column"),
]
"""Names refused by the one identifier rule, with the field each error names."""

BAD_URLS = [
    (
        "port-letters",
        "target.url",
        "postgresql://u:p@127.0.0.1:54x2/db",
        "target.url: port '54x2' is not a port number",
    ),
    ("port-after-ref", "source.url", "postgresql://u:${PW}@h:${PGPORT}x/db", "source.url: port '${PGPORT}x'"),
    ("port-too-big", "target.url", "mysql+pymysql://u@h:99999/db", "target.url: port '99999'"),
    ("port-zero", "target.url", "postgresql://h:0/db", "target.url: port '0'"),
    ("port-negative", "source.url", "postgresql://h:-5/db", "source.url: port '-5'"),
    ("port-space", "source.url", "postgresql://h: 5432/db", "source.url: port ' 5432'"),
    ("no-scheme", "target.url", "127.0.0.1:5432/db", "target.url: not a SQLAlchemy URL"),
    ("ref-as-dialect", "source.url", "${DIALECT}://u@h/db", "source.url: not a SQLAlchemy URL"),
    ("plain-word", "source.url", "warehouse", "source.url: not a SQLAlchemy URL"),
]
"""URLs refused when the file is loaded; a ``${VAR}`` stands for a placeholder while parsing."""

UNREADABLE_ENTRIES = [
    ("no-permission", "cannot read file: [Errno 13] Permission denied"),
    ("invalid-utf8", "cannot read file: 'utf-8' codec can't decode byte 0xff"),
    ("folder", "is a folder, not a configuration file"),
    ("link-to-folder", "is a folder, not a configuration file"),
    ("fifo", "is not a regular file (a FIFO, socket or device)"),
]
"""Entries named like a configuration that cannot be read as one, with the error each gives after its name."""

FULLWIDTH = "\uff11\uff10.\uff10.\uff10.\uff11"
"""10.0.0.1 in full-width digits, as a Chinese input method types them."""

# Host list files: (case id, content, expected invalid lines as (line number, text)).
HOST_FILES: list[tuple[str, bytes, list[tuple[int, str]]]] = [
    ("empty", b"", []),
    ("only-blank", b"\n\n   \n\t\n", []),
    ("only-comments", b"# a\n  # b\n#\n", []),
    ("garbage-word", b"10.0.0.1\nhello\n10.0.0.2\n", [(2, "hello")]),
    ("garbage-many", b"x\ny\nz\n", [(1, "x"), (2, "y"), (3, "z")]),
    ("octet-too-big", b"10.0.0.256\n", [(1, "10.0.0.256")]),
    ("too-few-octets", b"10.0.1\n", [(1, "10.0.1")]),
    ("too-many-octets", b"10.0.0.1.5\n", [(1, "10.0.0.1.5")]),
    ("cidr", b"10.0.0.0/24\n", [(1, "10.0.0.0/24")]),
    ("port", b"10.0.0.1:22\n", [(1, "10.0.0.1:22")]),
    ("hostname", b"db01.example.com\n", [(1, "db01.example.com")]),
    ("two-per-line", b"10.0.0.1 10.0.0.2\n", [(1, "10.0.0.1 10.0.0.2")]),
    ("comma-separated", b"10.0.0.1,10.0.0.2\n", [(1, "10.0.0.1,10.0.0.2")]),
    ("leading-zeros", b"010.000.000.001\n", [(1, "010.000.000.001")]),
    ("negative", b"-1.0.0.0\n", [(1, "-1.0.0.0")]),
    ("ipv6-full", b"2001:db8::1\n", []),
    ("ipv6-loopback", b"::1\n", []),
    ("ipv6-mapped", b"::ffff:10.0.0.1\n", []),
    ("ipv6-bad", b"2001:db8:::1\n", [(1, "2001:db8:::1")]),
    ("ipv6-zone", b"fe80::1%eth0\n", []),
    ("whitespace-around", b"   10.0.0.1   \n\t10.0.0.2\t\n", []),
    ("crlf", b"10.0.0.1\r\n10.0.0.2\r\n", []),
    ("trailing-comment", b"10.0.0.1  # db primary\n", []),
    ("duplicates", b"10.0.0.1\n10.0.0.1\n", []),
    ("long-line", b"1" * 100_000 + b"\n10.0.0.1\n", [(1, "1" * 100_000)]),
    ("long-garbage-after", b"10.0.0.1\n" + b"a" * 50_000, [(2, "a" * 50_000)]),
    ("no-final-newline", b"10.0.0.1", []),
    ("fullwidth-digits", FULLWIDTH.encode() + b"\n", [(1, FULLWIDTH)]),
    ("unicode-garbage", "主机一\n".encode(), [(1, "主机一")]),
    ("nbsp-around", "\u00a010.0.0.1\u00a0\n".encode(), []),
    ("zero-width", "10.0.0.1\u200b\n".encode(), [(1, "10.0.0.1\u200b")]),
    ("bom", "\ufeff10.0.0.1\n".encode(), []),
    ("sql-in-line", b"10.0.0.1'; DROP TABLE hosts; --\n", [(1, "10.0.0.1'; DROP TABLE hosts; --")]),
    ("html", b"<b>10.0.0.1</b>\n", [(1, "<b>10.0.0.1</b>")]),
    ("quoted", b'"10.0.0.1"\n', [(1, '"10.0.0.1"')]),
    ("bom-later-line", "10.0.0.1\n\ufeff10.0.0.2\n".encode(), [(2, "\ufeff10.0.0.2")]),
    ("binary-nul", b"\x00\x01\x02\n10.0.0.1\n", [(1, "\x00\x01\x02")]),
]
