"""Date functions that read the same on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Date
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction


class month_of(GenericFunction[date]):
    """The first day of the month of a DATE."""

    type = Date()
    inherit_cache = True
    name = "month_of"


@compiles(month_of, "postgresql")
def _month_of_postgresql(element: month_of, compiler: Any, **kw: Any) -> str:
    return f"CAST(date_trunc('month', {compiler.process(element.clauses, **kw)}) AS DATE)"


@compiles(month_of, "sqlite")
def _month_of_sqlite(element: month_of, compiler: Any, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)}, 'start of month')"


class utc_day_of(GenericFunction[date]):
    """The UTC day of a timestamp (stored as timestamptz, or as naive UTC text on SQLite)."""

    type = Date()
    inherit_cache = True
    name = "utc_day_of"


@compiles(utc_day_of, "postgresql")
def _utc_day_of_postgresql(element: utc_day_of, compiler: Any, **kw: Any) -> str:
    return f"CAST(({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC') AS DATE)"


@compiles(utc_day_of, "sqlite")
def _utc_day_of_sqlite(element: utc_day_of, compiler: Any, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"
