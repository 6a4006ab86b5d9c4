"""System checks of the audit app."""

from __future__ import annotations

from django.core import checks
from django.db import connections

# apps.audit.services appends with UPDATE ... RETURNING.
SQLITE_MIN = (3, 35)


@checks.register()
def sqlite_supports_returning(app_configs=None, databases=None, **kwargs):
    errors = []
    for alias in connections:
        connection = connections[alias]
        if connection.vendor != "sqlite":
            continue
        import sqlite3

        if sqlite3.sqlite_version_info < SQLITE_MIN:
            errors.append(
                checks.Error(
                    f"SQLite {sqlite3.sqlite_version} is too old for the audit log (database {alias!r}).",
                    hint="Use SQLite 3.35 or later (UPDATE ... RETURNING), or PostgreSQL.",
                    id="audit.E001",
                )
            )
    return errors
