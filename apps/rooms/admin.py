"""Moderators' daily tools for rooms: search, members, close/reopen/delete, bans, playlist,
sensitive words. Every change goes through the services (rules, audit)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q

from apps.core.context import Origin
from apps.core.errors import ApplicationError
from apps.rooms import services
from apps.rooms.models import MemberStatus, Movie, Room, RoomMember, SensitiveWord
from apps.rooms.moderation import words_changed


def _run(modeladmin, request, objects, action, done: str) -> None:
    count = 0
    for obj in objects:
        try:
            action(obj)
            count += 1
        except ApplicationError as exc:
            modeladmin.message_user(request, f"{obj}: {exc.message}", level=messages.ERROR)
    if count:
        modeladmin.message_user(request, f"{done}: {count}.", level=messages.SUCCESS)


class MemberInline(admin.TabularInline):
    model = RoomMember
    fields = ("user", "role", "status", "permissions_added", "permissions_removed", "joined_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("joined_at",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


class MovieInline(admin.TabularInline):
    model = Movie
    fields = ("position", "name", "type", "url", "added_by")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("position",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ClosedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("closed", "Closed")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(closed_at__isnull=True)
        if self.value() == "closed":
            return queryset.filter(closed_at__isnull=False)
        return queryset


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "creator", "members", "hidden", "allow_guests", "closed_at", "created_at")
    list_filter = (ClosedFilter, "hidden", "allow_guests", "join_requires_approval", "created_at")
    search_fields = ("name", "id", "description", "creator__username")
    list_select_related = ("creator",)
    date_hierarchy = "created_at"
    inlines = [MemberInline, MovieInline]
    actions = ["close_rooms", "reopen_rooms", "delete_rooms"]
    fields = (
        "id",
        "name",
        "description",
        "creator",
        "hidden",
        "allow_guests",
        "join_requires_approval",
        "member_permissions",
        "admin_permissions",
        "guest_permissions",
        "playlist_version",
        "closed_at",
        "created_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(active_members=Count("members", filter=Q(members__status=MemberStatus.ACTIVE)))
        )

    @admin.display(ordering="active_members", description="members")
    def members(self, room) -> int:
        return room.active_members

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the delete action below goes through the service (audit)

    def _actor(self, request, room):
        return services.actor_for_user(user=request.user, room=room)

    @admin.action(description="Close selected rooms (read-only, unlisted)")
    def close_rooms(self, request, queryset):
        origin = Origin.of(request)
        _run(
            self,
            request,
            queryset,
            lambda r: services.room_set_closed(
                actor=self._actor(request, r), room=r, closed=True, origin=origin
            ),
            "Closed",
        )

    @admin.action(description="Reopen selected rooms")
    def reopen_rooms(self, request, queryset):
        origin = Origin.of(request)
        _run(
            self,
            request,
            queryset,
            lambda r: services.room_set_closed(
                actor=self._actor(request, r), room=r, closed=False, origin=origin
            ),
            "Reopened",
        )

    @admin.action(description="Delete selected rooms")
    def delete_rooms(self, request, queryset):
        origin = Origin.of(request)
        _run(
            self,
            request,
            list(queryset),
            lambda r: services.room_delete(actor=self._actor(request, r), room=r, origin=origin),
            "Deleted",
        )


@admin.register(RoomMember)
class RoomMemberAdmin(admin.ModelAdmin):
    list_display = ("user", "room", "role", "status", "joined_at")
    list_filter = ("status", "role", "joined_at")
    search_fields = ("user__username", "user__id", "room__name", "room__id")
    list_select_related = ("user", "room")
    raw_id_fields = ("room", "user")
    actions = ["ban_members", "unban_members", "kick_members", "make_admin", "make_member"]
    fields = (
        "room",
        "user",
        "role",
        "status",
        "permissions_added",
        "permissions_removed",
        "ban_reason",
        "joined_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def _act(self, request, queryset, fn, done):
        origin = Origin.of(request)
        _run(
            self,
            request,
            list(queryset.select_related("room", "user")),
            lambda m: fn(
                actor=services.actor_for_user(user=request.user, room=m.room),
                room=m.room,
                target=m,
                origin=origin,
            ),
            done,
        )

    @admin.action(description="Ban selected members from their rooms")
    def ban_members(self, request, queryset):
        self._act(request, queryset, services.member_ban, "Banned")

    @admin.action(description="Unban selected members")
    def unban_members(self, request, queryset):
        self._act(request, queryset, services.member_unban, "Unbanned")

    @admin.action(description="Kick selected members")
    def kick_members(self, request, queryset):
        self._act(request, queryset, services.member_kick, "Kicked")

    @admin.action(description="Make selected members room admins")
    def make_admin(self, request, queryset):
        self._act(request, queryset, lambda **kw: services.member_update(role="admin", **kw), "Promoted")

    @admin.action(description="Make selected members plain members")
    def make_member(self, request, queryset):
        self._act(request, queryset, lambda **kw: services.member_update(role="member", **kw), "Demoted")


@admin.register(Movie)
class MovieAdmin(admin.ModelAdmin):
    list_display = ("name", "room", "type", "position", "added_by", "created_at")
    list_filter = ("type", "created_at")
    search_fields = ("name", "url", "room__name", "room__id", "added_by__username")
    list_select_related = ("room", "added_by")
    actions = ["remove_movies"]
    fields = ("room", "name", "url", "type", "position", "added_by", "subtitles", "headers", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Remove selected movies from their playlists")
    def remove_movies(self, request, queryset):
        origin = Origin.of(request)
        _run(
            self,
            request,
            list(queryset.select_related("room")),
            lambda m: services.movie_delete(
                actor=services.actor_for_user(user=request.user, room=m.room),
                room=m.room,
                movie=m,
                origin=origin,
            ),
            "Removed",
        )


@admin.register(SensitiveWord)
class SensitiveWordAdmin(admin.ModelAdmin):
    list_display = ("word", "created_at")
    search_fields = ("word",)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        words_changed()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        words_changed()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        words_changed()
