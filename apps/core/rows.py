"""Single-row statements for the real-time write path, without the ORM's query building.

Building a queryset and compiling it costs more than the round trip it sends: on the 2-vCPU bench
host a ``select_for_update().get()`` took ~0.6 ms of Python for a ~0.2 ms statement, and a playback
change through the WebSocket makes five such statements inside the transaction that holds the
audit chain lock. These helpers send what the ORM would send for the three shapes that path needs
(lock a row by primary key, update some of its fields, insert it), with the ORM's own conversions
in both directions (``get_db_prep_save`` on the way in, the backend's and the field's converters
on the way out), and keep the SQL text per model, field list and database.

What they do not do: send model signals (``pre_save``/``post_save``), so never write with them a
model django-auditlog or a receiver listens to (``lock``, ``update`` and ``insert`` refuse those;
``find`` only reads), run
``Field.pre_save`` hooks other than the insert's, or touch related caches. Everything else should
use the ORM.
"""

from __future__ import annotations

import functools
from typing import TypeVar

from django.db import connections, router
from django.db.models import Model, signals

M = TypeVar("M", bound=Model)


def lock(model: type[M], pk, *, using: str | None = None) -> M | None:
    """``model.objects.select_for_update().filter(pk=pk).first()``: the row, locked until the
    transaction ends (SQLite has no row locks: its write transaction holds the database)."""
    alias = using or router.db_for_write(model)
    statements = _writing(model, alias)
    with connections[alias].cursor() as cursor:
        cursor.execute(statements.lock_sql, [statements.pk_field.get_db_prep_value(pk, connections[alias])])
        row = cursor.fetchone()
    if row is None:
        return None
    return model.from_db(alias, statements.attnames, statements.convert(row))


def find(model: type[M], *, using: str | None = None, **equal) -> M | None:
    """``model.objects.filter(**equal).first()`` for columns that are unique together (at most
    one row matches, so no ordering is needed), by attname: ``find(RoomMember, room_id=…,
    user_id=…)``. The room WebSocket reads each joining socket's membership this way."""
    alias = using or router.db_for_read(model)
    connection = connections[alias]
    statements = _statements(model, alias)
    sql, targets = statements.find_sql(tuple(equal))
    params = [f.get_db_prep_value(equal[f.attname], connection) for f in targets]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return model.from_db(alias, statements.attnames, statements.convert(row))


def update(instance: Model, fields: tuple[str, ...], *, using: str | None = None) -> int:
    """``instance.save(update_fields=fields)`` as one UPDATE by primary key; the rows changed."""
    model = type(instance)
    alias = using or instance._state.db or router.db_for_write(model)
    connection = connections[alias]
    statements = _writing(model, alias)
    sql, targets = statements.update_sql(tuple(fields))
    params = [f.get_db_prep_save(getattr(instance, f.attname), connection) for f in targets]
    params.append(statements.pk_field.get_db_prep_value(instance.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert(instance: M, *, using: str | None = None) -> M:
    """``instance.save(force_insert=True)`` as one INSERT; an automatic primary key comes back
    with ``RETURNING`` (PostgreSQL, SQLite 3.35+)."""
    alias = using or router.db_for_write(type(instance))
    statements = _writing(type(instance), alias)
    return _send_insert(instance, alias, statements, statements.insert_sql, [])


def _send_insert(instance: M, alias: str, statements: RowStatements, sql: str, extra_params: list) -> M:
    """Send ``sql``, a statement around the model's INSERT: the INSERT's parameters, then
    ``extra_params``; the automatic primary key, if any, comes back as its first column."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*statements.insert_params(instance, connection), *extra_params])
        if statements.returns_pk:
            instance.pk = cursor.fetchone()[0]
    instance._state.adding, instance._state.db = False, alias
    return instance


def insert_then(instance: M, sql: str, params: list, *, using: str | None = None) -> M:
    """``insert(instance)``, then ``sql`` (an UPDATE or DELETE with no RETURNING, of another
    table) — on PostgreSQL in ONE round trip: both run as data-modifying ``WITH`` queries of one
    statement, which PostgreSQL executes exactly once each, to completion, whatever they match.
    Elsewhere (SQLite has no data-modifying ``WITH``) two statements."""
    model = type(instance)
    alias = using or router.db_for_write(model)
    connection = connections[alias]
    if connection.vendor != "postgresql":
        insert(instance, using=alias)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return instance
    statements = _writing(model, alias)
    result = f"SELECT {statements.pk_column} FROM inserted" if statements.returns_pk else "SELECT NULL"  # noqa: S608 - a quoted name from model metadata
    combined = f"WITH inserted AS ({statements.insert_sql}), followed AS ({sql}) {result}"
    return _send_insert(instance, alias, statements, combined, params)


class RowStatements:
    """The SQL of one model on one database, and how to read its columns back."""

    def __init__(self, model: type[Model], alias: str) -> None:
        connection = connections[alias]
        qn = connection.ops.quote_name
        meta = model._meta
        self.connection = connection
        self.table = qn(meta.db_table)
        self.fields = tuple(meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.pk_field = meta.pk
        self.pk_column = qn(meta.pk.column)
        columns = ", ".join(qn(f.column) for f in self.fields)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        self.lock_sql = f"SELECT {columns} FROM {self.table} WHERE {self.pk_column} = %s{lock}"  # noqa: S608 - quoted names from model metadata; values are parameters
        self.returns_pk = meta.pk.db_returning  # an AutoField: the database picks it
        self.insert_fields = tuple(f for f in self.fields if not (f.primary_key and self.returns_pk))
        insert_columns = ", ".join(qn(f.column) for f in self.insert_fields)
        values = ", ".join(["%s"] * len(self.insert_fields))
        returning = f" RETURNING {self.pk_column}" if self.returns_pk else ""
        self.insert_sql = f"INSERT INTO {self.table} ({insert_columns}) VALUES ({values}){returning}"  # noqa: S608 - quoted names from model metadata; values are parameters
        # Per column: the backend's converters, then the field's (what SQLCompiler applies). They
        # are bound to the connection of the thread that built them; they convert values and do no
        # I/O, so the database threads share them.
        self._converters = []
        for field in self.fields:
            column = field.get_col(meta.db_table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            self._converters.append((column, found))
        self._updates: dict[tuple[str, ...], tuple[str, tuple]] = {}
        self._finds: dict[tuple[str, ...], tuple[str, tuple]] = {}
        self._columns = columns

    def insert_params(self, instance: Model, connection) -> list:
        return [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in self.insert_fields]

    def convert(self, row) -> list:
        values = list(row)
        for i, (column, found) in enumerate(self._converters):
            for converter in found:
                values[i] = converter(values[i], column, self.connection)
        return values

    def update_sql(self, names: tuple[str, ...]) -> tuple[str, tuple]:
        cached = self._updates.get(names)
        if cached is None:
            meta = self.fields[0].model._meta
            targets = tuple(meta.get_field(name) for name in names)
            qn = self.connection.ops.quote_name
            assignments = ", ".join(f"{qn(f.column)} = %s" for f in targets)
            cached = self._updates[names] = (
                f"UPDATE {self.table} SET {assignments} WHERE {self.pk_column} = %s",  # noqa: S608 - quoted names from model metadata; values are parameters
                targets,
            )
        return cached

    def find_sql(self, attnames: tuple[str, ...]) -> tuple[str, tuple]:
        cached = self._finds.get(attnames)
        if cached is None:
            by_attname = {f.attname: f for f in self.fields}
            targets = tuple(by_attname[name] for name in attnames)
            qn = self.connection.ops.quote_name
            where = " AND ".join(f"{qn(f.column)} = %s" for f in targets)
            cached = self._finds[attnames] = (
                f"SELECT {self._columns} FROM {self.table} WHERE {where} LIMIT 1",  # noqa: S608 - quoted names from model metadata; values are parameters
                targets,
            )
        return cached


@functools.cache
def _statements(model: type[Model], alias: str) -> RowStatements:
    return RowStatements(model, alias)


def _writing(model: type[Model], alias: str) -> RowStatements:
    """The statements of a model that rows may write (``lock`` belongs to a write)."""
    if signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model):
        raise ValueError(f"{model.__name__} has save signal receivers; rows.* would skip them")
    return _statements(model, alias)
