from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.mail.models import OutboundEmail


@admin.register(OutboundEmail)
class OutboundEmailAdmin(ReadOnlyAdmin):
    """Read-only: what went out, to whom, and why it did not. Never the bodies: they hold
    verification and reset links that act as passwords (docs/accounts.md, "E-mail")."""

    list_display = ("created_at", "to", "template", "subject", "status", "attempts", "sent_at", "last_error")
    list_filter = ("status", "template", ("created_at", admin.DateFieldListFilter))
    search_fields = ("to", "message_id", "id")
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "id",
        "to",
        "template",
        "subject",
        "message_id",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "next_attempt_at",
        "claimed_until",
        "sent_at",
    )
    show_full_result_count = False
