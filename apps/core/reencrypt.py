"""Rewrite every secret at rest under the first configured key (docs/security.md, "Secrets at rest")."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.apps import apps
from django.db import transaction

from apps.core import crypto


@dataclass
class ColumnReport:
    column: crypto.EncryptedColumn
    rows: int = 0  # values looked at (empty ones are not counted)
    rewritten: int = 0
    unreadable: list[str] = field(default_factory=list)  # primary keys no configured key opens


def reencrypt_column(column: crypto.EncryptedColumn, *, dry_run: bool = False) -> ColumnReport:
    """One row at a time, each in its own transaction with the row locked, so a writer of the
    same row (a new signing key, a mail being sent) is never overwritten with an older value."""
    report = ColumnReport(column)
    model = apps.get_model(column.model)
    for pk in model._default_manager.values_list("pk", flat=True).iterator():
        with transaction.atomic():
            row = model._default_manager.select_for_update().filter(pk=pk).first()
            value = getattr(row, column.field, None) if row is not None else None
            if not value:
                continue  # gone meanwhile, or emptied (a sent message's bodies)
            report.rows += 1
            if crypto.encrypted_with_first_key(value):
                continue
            associated = column.associated_data(row)
            try:
                plain = crypto.decrypt(value, associated_data=associated)
            except crypto.DecryptionError:
                report.unreadable.append(str(pk))
                continue
            report.rewritten += 1
            if not dry_run:
                setattr(row, column.field, crypto.encrypt(plain, associated_data=associated))
                row.save(update_fields=[column.field])
    return report


def reencrypt_all(*, dry_run: bool = False) -> list[ColumnReport]:
    return [reencrypt_column(column, dry_run=dry_run) for column in crypto.ENCRYPTED_COLUMNS]
