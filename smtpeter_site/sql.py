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
