from django.contrib import admin

from apps.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is evidence, moderators look but never edit."""

    list_display = ("created_at", "action", "user", "resource_type", "resource_id", "ip")
    list_filter = ("action", "resource_type", ("created_at", admin.DateFieldListFilter))
    search_fields = ("action", "resource_id", "user__username", "ip", "details")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
