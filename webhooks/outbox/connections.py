"""Running one statement through whatever connection the caller holds, inside the
caller's transaction: psycopg 3, SQLAlchemy or Django, none of them imported here
unless the caller uses it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInput

__all__ = ["execute"]


def execute(conn: Any, sql: str, params: Mapping[str, Any]) -> Any:
    """Run ``sql`` on ``conn`` and return the first column of its first row."""
    if isinstance(conn, str):
        return _django(conn, sql, params)
    library = type(conn).__module__.partition(".")[0]
    if library == "psycopg" and hasattr(conn, "execute") and hasattr(conn, "cursor"):
        return conn.execute(sql, params).fetchone()[0]
    if library == "sqlalchemy":
        # exec_driver_sql: the statement goes to the driver as it is, in its
        # transaction (a Session's, through the connection it is bound to).
        target = conn if hasattr(conn, "exec_driver_sql") else conn.connection()
        return target.exec_driver_sql(sql, dict(params)).scalar_one()
    raise InvalidInput(
        "conn",
        "must be a psycopg 3 connection, a SQLAlchemy Connection or "
        f"Session, or a Django connection alias, not "
        f"{type(conn).__name__}",
    )


def _django(alias: str, sql: str, params: Mapping[str, Any]) -> Any:
    from django.db import connections

    if alias not in connections:
        raise InvalidInput("conn", f"no Django database named {alias[:100]!r}")
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]
