"""Moderators' and operators' view of live streams (docs/streaming.md, "Admin"): the list, and
actions to cut a publisher and rotate a key, through the services (rules, audit)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from apps.core.context import Origin
from apps.core.errors import ApplicationError
from apps.rooms import services as room_services
from apps.streaming import services
from apps.streaming.models import Stream


def _actor(request, stream: Stream):
    return room_services.actor_for_user(user=request.user, room=stream.room)


@admin.register(Stream)
class StreamAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "room", "owner", "live", "publisher_node", "live_since", "created_at")
    list_filter = ("live", "publisher_node", "created_at")
    search_fields = ("name", "id", "room__name", "room__id", "owner__username")
    list_select_related = ("room", "owner")
    date_hierarchy = "created_at"
    actions = ["cut_publishers", "rotate_keys"]
    # The key hash stays out of the form: it opens nothing, but nobody needs to see or edit it.
    fields = (
        "name",
        "room",
        "movie",
        "owner",
        "source_url",
        "live",
        "publisher_node",
        "live_since",
        "publisher_seen_at",
        "key_rotated_at",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False  # streams are made in their room (POST rooms/{id}/streams), with a playlist entry

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deleting goes through the API's service (playlist entry, cut, audit)

    @admin.action(description="Cut the publisher of the selected streams")
    def cut_publishers(self, request, queryset):
        cut = 0
        for stream in queryset.select_related("room"):
            try:
                cut += services.stream_cut(
                    actor=_actor(request, stream), stream=stream, origin=Origin.of(request)
                )
            except ApplicationError as exc:
                self.message_user(request, f"{stream}: {exc.message}", level=messages.ERROR)
        self.message_user(request, f"Publishers cut: {cut}.", level=messages.SUCCESS)

    @admin.action(description="Rotate the key of the selected streams (the new key is shown once)")
    def rotate_keys(self, request, queryset):
        for stream in queryset.select_related("room"):
            try:
                rotated = services.stream_rotate_key(
                    actor=_actor(request, stream), stream=stream, origin=Origin.of(request)
                )
            except ApplicationError as exc:
                self.message_user(request, f"{stream}: {exc.message}", level=messages.ERROR)
                continue
            self.message_user(
                request,
                format_html(
                    "{}: new key <code>{}</code> (publish to <code>{}</code>). It is shown only now.",
                    stream.name,
                    rotated.key,
                    rotated.publish_url,
                ),
                level=messages.WARNING,
            )
