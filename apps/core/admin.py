"""Shared admin pieces."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Moderators look, never add, change or delete: evidence (the audit log), records made by
    commands (signing keys, purge anchors) or by workers (outgoing mail)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
