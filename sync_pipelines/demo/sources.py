"""Source databases for the demo syncs in ``syncs/``: an ERP and a staff directory, in SQLite.

The data is generated from a fixed seed, so every build gives the same rows. A database is built
only when its file is missing, which lets the demo be run again against unchanged sources. The
target databases are not made here: each sync creates its own target table.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

SEED = 20240601
ORDER_COUNT = 5_000
USER_COUNT = 500
# Orders whose `qty` holds text that no integer cast accepts; the demo reports them as failed records.
BAD_QTY: dict[int, str] = {1207: "n/a", 2718: "n/a", 3342: "two", 4461: "n/a"}

_ORDER_START = datetime(2024, 3, 1, 8, 0)
_DIRECTORY_START = datetime(2024, 2, 1, 9, 0)
_ORDER_STATUSES = (("draft", 5), ("placed", 15), ("paid", 25), ("shipped", 45), ("cancelled", 10))
_NOTES = ("leave at reception", "gift wrap", "call before delivery", "invoice required", "fragile")

# (id, name, parent id): a company tree of 32 departments.
_DEPARTMENTS: tuple[tuple[int, str, int | None], ...] = (
    (1, "Headquarters", None),
    (2, "Engineering", 1),
    (3, "Product", 1),
    (4, "Sales", 1),
    (5, "Marketing", 1),
    (6, "Finance", 1),
    (7, "Human Resources", 1),
    (8, "Operations", 1),
    (9, "Customer Support", 1),
    (10, "Platform", 2),
    (11, "Data", 2),
    (12, "Mobile", 2),
    (13, "Quality Assurance", 2),
    (14, "Security", 2),
    (15, "Design", 3),
    (16, "User Research", 3),
    (17, "North Region", 4),
    (18, "South Region", 4),
    (19, "East Region", 4),
    (20, "West Region", 4),
    (21, "Key Accounts", 4),
    (22, "Brand", 5),
    (23, "Growth", 5),
    (24, "Accounting", 6),
    (25, "Treasury", 6),
    (26, "Recruiting", 7),
    (27, "Payroll", 7),
    (28, "IT", 8),
    (29, "Facilities", 8),
    (30, "Procurement", 8),
    (31, "Support Tier 1", 9),
    (32, "Support Tier 2", 9),
)
# fmt: off
_FAMILY_NAMES = (
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun",
    "Ma", "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo", "Zheng", "Liang", "Song", "Tang",
)
_GIVEN_NAMES = (
    "Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yong", "Jie", "Tao", "Ming", "Chao", "Xiu", "Hui", "Ping",
    "Gang", "Hua", "Jun", "Bo", "Yan", "Xin", "Yu", "Hao", "Lan", "Qiang", "Fei", "Ning", "Rui", "Ting",
    "Kai", "Lu",
)
# fmt: on


def build_demo_databases(directory: Path) -> dict[str, Path]:
    """Create the demo's SQLite source databases in ``directory`` unless they already exist.

    Args:
        directory: Folder for the database files; created when missing.

    Returns:
        The path of each source database by name: ``erp`` (table ``orders``) and ``directory``
        (tables ``departments`` and ``users``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    builders: dict[str, Callable[[sa.Engine], None]] = {"erp": _build_erp, "directory": _build_directory}
    paths: dict[str, Path] = {}
    for name, build in builders.items():
        path = directory / f"{name}.db"
        if not path.exists():
            _build_atomically(path, build)
        paths[name] = path
    return paths


def _build_atomically(path: Path, build: Callable[[sa.Engine], None]) -> None:
    """Build into a temporary file and move it into place, so an interrupted build leaves nothing."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    engine = sa.create_engine(f"sqlite:///{partial}")
    try:
        build(engine)
    finally:
        engine.dispose()
    os.replace(partial, path)


def _build_erp(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    orders = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("sku", sa.String(32), nullable=False),
        sa.Column("qty", sa.Integer),
        sa.Column("unit_price", sa.Numeric(12, 2)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.String(200)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Index("ix_orders_updated_at_id", "updated_at", "id"),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.insert(orders), _order_rows(random.Random(SEED)))  # noqa: S311 - made-up data


def _order_rows(rng: random.Random) -> list[dict[str, Any]]:
    catalog = {f"SKU-{10000 + n}": Decimal(rng.randint(199, 49999)) / 100 for n in range(200)}
    skus = sorted(catalog)
    statuses = [status for status, _ in _ORDER_STATUSES]
    weights = [weight for _, weight in _ORDER_STATUSES]
    rows = []
    for order_id in range(1, ORDER_COUNT + 1):
        # 25-minute slots with jitter keep created_at increasing with the id.
        created = _ORDER_START + timedelta(minutes=25 * order_id + rng.randint(0, 20), seconds=rng.randint(0, 59))
        status = "placed" if order_id in BAD_QTY else rng.choices(statuses, weights)[0]
        sku = rng.choice(skus)
        qty: int | str = BAD_QTY.get(order_id) or rng.choice((1, 1, 1, 2, 2, 3, 4, 5, 10, 20))
        rows.append(
            {
                "id": order_id,
                "customer_id": rng.randint(1, 800),
                "sku": sku,
                "qty": qty,
                "unit_price": catalog[sku],
                "status": status,
                "note": rng.choice(_NOTES) if rng.random() < 0.1 else None,
                "created_at": created,
                "updated_at": _order_updated_at(rng, status, created),
            }
        )
    return rows


def _order_updated_at(rng: random.Random, status: str, created: datetime) -> datetime:
    if status == "shipped":
        # The warehouse stamps every order it ships at its 06:00 run: many orders, one timestamp.
        day = (created + timedelta(days=1)).replace(hour=6, minute=0, second=0)
        return day if day > created + timedelta(hours=12) else day + timedelta(days=1)
    if status == "paid":
        return created + timedelta(minutes=rng.randint(5, 240), seconds=rng.randint(0, 59))
    if status == "cancelled":
        # Cancellations are applied in hourly batches.
        return (created + timedelta(hours=rng.randint(1, 48))).replace(minute=0, second=0)
    return created


def _build_directory(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    departments = sa.Table(
        "departments",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("departments.id")),
        sa.Column("manager", sa.String(64)),
    )
    users = sa.Table(
        "users",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("full_name", sa.String(128), nullable=False),
        sa.Column("email", sa.String(255)),
        sa.Column("department_id", sa.Integer, sa.ForeignKey("departments.id")),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    metadata.create_all(engine)
    user_rows = _user_rows(random.Random(SEED + 3))  # noqa: S311 - made-up data
    managers: dict[int, str] = {}
    for user in user_rows:  # the first active member of a department manages it
        if user["active"]:
            managers.setdefault(user["department_id"], user["username"])
    department_rows = [
        {"id": dept_id, "name": name, "parent_id": parent, "manager": managers.get(dept_id)}
        for dept_id, name, parent in _DEPARTMENTS
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(departments), department_rows)
        connection.execute(sa.insert(users), user_rows)


def _user_rows(rng: random.Random) -> list[dict[str, Any]]:
    parents = {parent for _, _, parent in _DEPARTMENTS}
    leaf_ids = [dept_id for dept_id, _, _ in _DEPARTMENTS if dept_id not in parents]
    head_ids = [dept_id for dept_id, _, parent in _DEPARTMENTS if parent is None or parent == 1]
    # Many users arrived through one HR import and still carry its timestamp.
    hr_import = _DIRECTORY_START + timedelta(days=14)
    taken: set[str] = set()
    rows = []
    for user_id in range(1, USER_COUNT + 1):
        family, given = rng.choice(_FAMILY_NAMES), rng.choice(_GIVEN_NAMES)
        base = f"{given}.{family}".lower()
        username = base
        suffix = 2
        while username in taken:
            username, suffix = f"{base}{suffix}", suffix + 1
        taken.add(username)
        # The first users head the company and its top-level departments.
        department = head_ids[user_id - 1] if user_id <= len(head_ids) else rng.choice(leaf_ids)
        updated = (
            hr_import if rng.random() < 0.4 else _DIRECTORY_START + timedelta(minutes=rng.randint(0, 60 * 24 * 60))
        )
        rows.append(
            {
                "id": user_id,
                "username": username,
                "full_name": f"{family} {given}",
                "email": f"{username}@example.com",
                "department_id": department,
                "active": user_id <= len(head_ids) or rng.random() > 0.04,
                "updated_at": updated,
            }
        )
    return rows
