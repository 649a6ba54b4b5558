"""Plain SQL built from a model's metadata, for the hot paths that skip the ORM's query code."""
from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model


def insert_sql(connection: BaseDatabaseWrapper, model: type[Model], names: list[str]) -> str:
    """INSERT INTO the model's table (the columns of fields `names`) VALUES (%s, ...)."""
    qn = connection.ops.quote_name
    columns = ", ".join(qn(model._meta.get_field(n).column) for n in names)
    return (f"INSERT INTO {qn(model._meta.db_table)} ({columns}) "
            f"VALUES ({', '.join(['%s'] * len(names))})")


def select_sql(connection: BaseDatabaseWrapper, model: type[Model], names: list[str],
               where: str) -> str:
    """SELECT the columns of fields `names` FROM the model's table WHERE the column of field
    `where` (compared by the caller's own ``= %s`` or ``IN (...)``)."""
    qn = connection.ops.quote_name
    columns = ", ".join(qn(model._meta.get_field(n).column) for n in names)
    return (f"SELECT {columns} FROM {qn(model._meta.db_table)} "
            f"WHERE {qn(model._meta.get_field(where).column)}")
