from django.contrib import admin

from apps.audit.models import AuditAnchor, AuditEvent
from apps.core.admin import ReadOnlyAdmin


class ActionPrefixFilter(admin.SimpleListFilter):
    """Group actions by their area (auth, token, user, room, member, playlist, playback...)."""

    title = "area"
    parameter_name = "area"

    def lookups(self, request, model_admin):
        prefixes = sorted(
            {a.split(".", 1)[0] for a in AuditEvent.objects.values_list("action", flat=True).distinct()}
        )
        return [(p, p) for p in prefixes]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action__startswith=f"{self.value()}.")
        return queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the audit log is evidence, moderators look but never edit (and the hash chain
    would show it if anyone did)."""

    list_display = ("seq", "created_at", "action", "user", "room_id", "resource_type", "resource_id", "ip")
    list_filter = (ActionPrefixFilter, "action", "resource_type", ("created_at", admin.DateFieldListFilter))
    search_fields = ("action", "resource_id", "room_id", "user__username", "user__id", "ip")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    show_full_result_count = False


@admin.register(AuditAnchor)
class AuditAnchorAdmin(ReadOnlyAdmin):
    """Read-only: what each ``purge_audit_log`` removed; the chain is verified from the newest."""

    list_display = ("seq", "purged", "before", "created_at")
    readonly_fields = [f.name for f in AuditAnchor._meta.fields]
