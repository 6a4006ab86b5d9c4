"""Rooms REST endpoints (docs/api.md, "REST": rooms, playlist, playback). Thin: parse, find the actor,
call a service, shape the answer. Permission decisions are the services' (apps.permissions)."""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError
from django.http import JsonResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import copies, ratelimit
from apps.core.context import Origin
from apps.core.errors import InvalidInput, NotInRoom, PermissionDenied, RoomPasswordWrong
from apps.core.openapi import PAGE_PARAMETER
from apps.permissions.flags import Perm
from apps.rooms import greeting, selectors, services
from apps.rooms.messages import PlaybackChange
from apps.rooms.schema import (
    AUDIT_PAGE,
    CURRENT_MOVIE,
    GUEST_JOIN,
    MEMBER_PAGE,
    MOVIES_IN,
    MOVIES_OUT,
    PLAYLIST,
    PLAYLIST_ORDER,
    ROOM_PAGE,
)
from apps.rooms.serializers import (
    MAX_BATCH,
    AuditEventSerializer,
    BanSerializer,
    GuestSerializer,
    InviteCreateSerializer,
    InviteSerializer,
    JoinSerializer,
    MemberSerializer,
    MemberUpdateSerializer,
    MovieEditSerializer,
    MovieInSerializer,
    MovieSerializer,
    PlaybackSerializer,
    ReorderSerializer,
    RoomCreateSerializer,
    RoomSerializer,
    RoomUpdateSerializer,
    playback_change,
)

ERRORS = {
    400: OpenApiResponse(description="invalid"),
    401: OpenApiResponse(description="not_authenticated / token_invalid"),
    403: OpenApiResponse(description="permission_denied / not_in_room"),
    404: OpenApiResponse(description="not_found"),
}


def _validated(serializer_class, request, **kwargs):
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class GuestAllowed(IsAuthenticated):
    """Registered users and guest tokens (a guest token opens only its own room: the actor
    lookup gives a guest in another room no membership)."""


class RoomView(APIView):
    """Base of the views under rooms/{id}: the room in the URL and the caller's actor there."""

    def access(self, request, room_id, *, member: bool = True):
        """selectors.room_access for this request: 404 no such room; with ``member``, 403
        not_in_room for anyone but an active member or a site admin."""
        return selectors.room_access(user=request.user, room_id=room_id, auth=request.auth, member=member)

    def access_with_body(self, request, room_id, serializer_class, *, member: bool = True):
        """The room, the actor and the validated body, answered in this order: 404 no such room,
        400 a bad body, 403 not_in_room (with ``member``)."""
        room, actor = self.access(request, room_id, member=False)
        data = _validated(serializer_class, request)
        if member:
            selectors.require_member(actor)
        return room, actor, data


class RoomListView(APIView):
    permission_classes = [AllowAny]

    @property
    def anonymous_allowed(self) -> bool:
        # Only reads are open to anonymous callers. On a write a bad token must be reported
        # (user_banned, token_revoked...), not turned into "anonymous" and a 401.
        return self.request.method in SAFE_METHODS

    def get_permissions(self):
        return [IsAuthenticated()] if self.request.method == "POST" else super().get_permissions()

    @extend_schema(
        parameters=[
            OpenApiParameter("search", str, description="Matches name or description."),
            PAGE_PARAMETER,
        ],
        responses={200: ROOM_PAGE},
        summary="Public rooms",
        operation_id="api_v1_rooms_list",
    )
    def get(self, request):
        search = request.query_params.get("search", "")
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(selectors.room_list_public(search=search), request, view=self)
        return paginator.get_paginated_response(RoomSerializer(page, many=True).data)

    @extend_schema(
        request=RoomCreateSerializer, responses={201: RoomSerializer, **ERRORS}, summary="Create a room"
    )
    def post(self, request):
        if getattr(request.user, "is_guest", False):
            raise PermissionDenied("Guests cannot create rooms.")
        data = _validated(RoomCreateSerializer, request)
        room = services.room_create(
            creator=request.user,
            name=data["name"],
            description=data.get("description", ""),
            password=data.get("password") or "",
            settings=data.get("settings"),
            origin=Origin.of(request),
        )
        room = selectors.room_get(room.pk, with_counts=True)
        return Response(RoomSerializer(room).data, status=status.HTTP_201_CREATED)


class RoomDetailView(RoomView):
    permission_classes = [AllowAny]

    @property
    def anonymous_allowed(self) -> bool:
        # Only reads are open to anonymous callers. On a write a bad token must be reported
        # (user_banned, token_revoked...), not turned into "anonymous" and a 401.
        return self.request.method in SAFE_METHODS

    def get_permissions(self):
        return [GuestAllowed()] if self.request.method != "GET" else super().get_permissions()

    @extend_schema(responses={200: RoomSerializer, **ERRORS}, summary="A room")
    def get(self, request, room_id):
        try:
            room = selectors.room_get(room_id, with_counts=True)
        except DatabaseError as exc:  # the database is down: the copy in Redis, marked stale
            return copies.stale_response(greeting.copied_room(exc, room_id).payload)
        return Response(RoomSerializer(room).data)

    @extend_schema(
        request=RoomUpdateSerializer,
        responses={200: RoomSerializer, **ERRORS},
        summary="Edit a room (info: EDIT_ROOM_INFO; settings: EDIT_ROOM_SETTINGS)",
    )
    def patch(self, request, room_id):
        room, actor, data = self.access_with_body(request, room_id, RoomUpdateSerializer, member=False)
        services.room_update(actor=actor, room=room, changes=data, origin=Origin.of(request))
        return Response(RoomSerializer(selectors.room_get(room.pk, with_counts=True)).data)

    @extend_schema(responses={204: None, **ERRORS}, summary="Delete a room (creator or site admin)")
    def delete(self, request, room_id):
        room, actor = self.access(request, room_id, member=False)  # anyone else: permission_denied
        services.room_delete(actor=actor, room=room, origin=Origin.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class JoinView(RoomView):
    @extend_schema(
        request=JoinSerializer,
        responses={200: MemberSerializer, 201: MemberSerializer, 202: MemberSerializer, **ERRORS},
        summary="Join a room",
    )
    def post(self, request, room_id):
        room = selectors.room_get(room_id)
        data = _validated(JoinSerializer, request)
        password = data.get("password")
        attempt = None
        if password and not data.get("invite"):
            # Counted before the password is hashed (an increment that refuses when over), so
            # parallel guesses cannot all pass one check; anything but a wrong password gives the
            # attempt back (docs/security.md, "Limits").
            ratelimit.hit_ip(request, limit="room_password_ip")
            attempt = ratelimit.take(limit="room_password_user", key=f"{request.user.pk}:{room.pk}")
        try:
            member, created = services.member_join(
                user=request.user,
                room=room,
                password=password,
                invite_code=data.get("invite"),
                origin=Origin.of(request),
            )
        except RoomPasswordWrong:
            raise
        except Exception:
            ratelimit.give_back(attempt)
            raise
        ratelimit.give_back(attempt)
        code = (
            status.HTTP_202_ACCEPTED
            if member.status == "pending"
            else (status.HTTP_201_CREATED if created else status.HTTP_200_OK)
        )
        return Response(MemberSerializer(member).data, status=code)


class LeaveView(RoomView):
    permission_classes = [GuestAllowed]  # guests may leave too

    @extend_schema(request=None, responses={204: None, **ERRORS}, summary="Leave a room")
    def post(self, request, room_id):
        room = selectors.room_get(room_id)
        services.member_leave(user=request.user, room=room, origin=Origin.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class GuestJoinView(RoomView):
    permission_classes = [AllowAny]
    anonymous_allowed = True

    @extend_schema(
        request=GuestSerializer,
        responses={200: GUEST_JOIN, **ERRORS},
        summary="Join as a guest (4-hour token bound to this room)",
    )
    def post(self, request, room_id):
        room = selectors.room_get(room_id)
        data = _validated(GuestSerializer, request)
        ratelimit.hit_ip(request, limit="guest_ip")
        member, token = services.guest_join(room=room, name=data["name"], origin=Origin.of(request))
        return Response({"access": token, "member": MemberSerializer(member).data})


class InviteView(RoomView):
    @extend_schema(
        request=InviteCreateSerializer,
        responses={201: InviteSerializer, **ERRORS},
        summary="Create an invite (INVITE_MEMBERS)",
    )
    def post(self, request, room_id):
        room, actor, data = self.access_with_body(request, room_id, InviteCreateSerializer, member=False)
        invite = services.invite_create(
            actor=actor,
            room=room,
            max_uses=data.get("max_uses"),
            expires_in=data.get("expires_in"),
            origin=Origin.of(request),
        )
        body = {
            "code": invite.code,
            "url": f"{settings.PUBLIC_URL.rstrip('/')}/rooms/{room.pk}/?invite={invite.code}",
            "expires_at": invite.expires_at,
            "max_uses": invite.max_uses,
            "uses": invite.uses,
        }
        return Response(InviteSerializer(body).data, status=status.HTTP_201_CREATED)


class MemberListView(RoomView):
    permission_classes = [GuestAllowed]

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=["active", "pending", "banned"]), PAGE_PARAMETER],
        responses={200: MEMBER_PAGE, **ERRORS},
        operation_id="api_v1_rooms_members_list",
        summary="Members (VIEW_MEMBER_LIST; pending and banned lists need KICK_MEMBERS or BAN_MEMBERS)",
    )
    def get(self, request, room_id):
        room, actor = self.access(request, room_id)
        services.require(actor, Perm.VIEW_MEMBER_LIST)
        wanted = request.query_params.get("status", "active")
        if wanted not in ("active", "pending", "banned"):
            raise InvalidInput(
                "status: one of active, pending, banned.", details={"status": ["Unknown status."]}
            )
        if wanted != "active" and not (actor.can(Perm.KICK_MEMBERS) or actor.can(Perm.BAN_MEMBERS)):
            raise PermissionDenied("Seeing pending or banned members needs KICK_MEMBERS or BAN_MEMBERS.")
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(
            selectors.member_list(room=room, status=wanted), request, view=self
        )
        return paginator.get_paginated_response(MemberSerializer(page, many=True).data)


class MemberMeView(RoomView):
    permission_classes = [GuestAllowed]

    @extend_schema(responses={200: MemberSerializer, **ERRORS}, summary="The caller's membership")
    def get(self, request, room_id):
        # Their own row, pending too; a site admin without one is not in the room.
        _room, actor = self.access(request, room_id, member=False)
        if actor.member is None or actor.member.status == "banned":
            raise NotInRoom()
        return Response(MemberSerializer(actor.member).data)


class MemberDetailView(RoomView):
    @extend_schema(
        request=MemberUpdateSerializer,
        responses={200: MemberSerializer, **ERRORS},
        summary="Change a member's role or permission overrides",
    )
    def patch(self, request, room_id, user_id):
        room, actor, data = self.access_with_body(request, room_id, MemberUpdateSerializer)
        target = selectors.member_get(room=room, user_id=user_id)
        member = services.member_update(
            actor=actor, room=room, target=target, origin=Origin.of(request), **data
        )
        return Response(MemberSerializer(member).data)


class MemberActionView(RoomView):
    """kick / ban / unban / approve."""

    action_name = ""

    @extend_schema(request=BanSerializer, responses={204: None, 200: MemberSerializer, **ERRORS})
    def post(self, request, room_id, user_id):
        if self.action_name == "ban":
            room, actor, data = self.access_with_body(request, room_id, BanSerializer)
        else:
            room, actor = self.access(request, room_id)
            data = {}
        target = selectors.member_get(room=room, user_id=user_id)
        origin = Origin.of(request)
        if self.action_name == "kick":
            services.member_kick(actor=actor, room=room, target=target, origin=origin)
        elif self.action_name == "ban":
            services.member_ban(
                actor=actor, room=room, target=target, reason=data.get("reason", ""), origin=origin
            )
        elif self.action_name == "unban":
            services.member_unban(actor=actor, room=room, target=target, origin=origin)
        else:
            member = services.member_approve(actor=actor, room=room, target=target, origin=origin)
            return Response(MemberSerializer(member).data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditLogView(RoomView):
    @extend_schema(
        parameters=[PAGE_PARAMETER],
        responses={200: AUDIT_PAGE, **ERRORS},
        summary="Room audit log (VIEW_AUDIT_LOG)",
        operation_id="api_v1_rooms_audit_log_list",
    )
    def get(self, request, room_id):
        room, actor = self.access(request, room_id)
        services.require(actor, Perm.VIEW_AUDIT_LOG)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(selectors.room_audit_log(room=room), request, view=self)
        return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)


class MovieListView(RoomView):
    permission_classes = [GuestAllowed]

    @extend_schema(
        responses={200: PLAYLIST, **ERRORS},
        summary="The playlist, in order",
        operation_id="api_v1_rooms_movies_list",
    )
    def get(self, request, room_id):
        room, _actor = self.access(request, room_id)
        movies = selectors.movie_list(room=room)
        return Response(
            {
                "count": len(movies),
                "next": None,
                "previous": None,
                "playlist_version": room.playlist_version,
                "results": MovieSerializer(movies, many=True).data,
            }
        )

    @extend_schema(
        request=MOVIES_IN,
        responses={201: MOVIES_OUT, **ERRORS},
        summary="Add a movie or a list of movies (ADD_MOVIE)",
    )
    def post(self, request, room_id):
        room, actor = self.access(request, room_id, member=False)  # the service: ADD_MOVIE
        many = isinstance(request.data, list)
        if many and not 1 <= len(request.data) <= MAX_BATCH:
            raise InvalidInput(f"Give 1 to {MAX_BATCH} movies.")
        data = _validated(MovieInSerializer, request, many=many)
        movies = services.movies_add(
            actor=actor, room=room, items=data if many else [data], origin=Origin.of(request)
        )
        body = MovieSerializer(movies, many=True).data if many else MovieSerializer(movies[0]).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses={204: None, **ERRORS},
        summary="Clear the playlist (DELETE_MOVIE)",
        operation_id="rooms_movies_clear",
    )
    def delete(self, request, room_id):
        room, actor = self.access(request, room_id, member=False)  # closed room before membership
        services.playlist_clear(actor=actor, room=room, origin=Origin.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MovieDetailView(RoomView):
    @extend_schema(
        request=MovieEditSerializer, responses={200: MovieSerializer, **ERRORS}, summary="Edit a movie"
    )
    def patch(self, request, room_id, movie_id):
        room, actor, data = self.access_with_body(request, room_id, MovieEditSerializer)
        movie = selectors.movie_get(room=room, movie_id=movie_id)
        movie = services.movie_edit(
            actor=actor, room=room, movie=movie, changes=data, origin=Origin.of(request)
        )
        return Response(MovieSerializer(movie).data)

    @extend_schema(responses={204: None, **ERRORS}, summary="Delete a movie (DELETE_MOVIE or its adder)")
    def delete(self, request, room_id, movie_id):
        room, actor = self.access(request, room_id)
        movie = selectors.movie_get(room=room, movie_id=movie_id)
        services.movie_delete(actor=actor, room=room, movie=movie, origin=Origin.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReorderView(RoomView):
    @extend_schema(
        request=ReorderSerializer,
        responses={200: PLAYLIST_ORDER, **ERRORS},
        summary="Set the full playlist order (REORDER_PLAYLIST)",
    )
    def post(self, request, room_id):
        room, actor, data = self.access_with_body(request, room_id, ReorderSerializer, member=False)
        services.playlist_reorder(actor=actor, room=room, order=data["order"], origin=Origin.of(request))
        movies = selectors.movie_list(room=room)
        return Response(
            {
                "count": len(movies),
                "next": None,
                "previous": None,
                "results": MovieSerializer(movies, many=True).data,
            }
        )


class CurrentMovieView(RoomView):
    permission_classes = [GuestAllowed]

    @extend_schema(responses={200: CURRENT_MOVIE, **ERRORS}, summary="The movie playing now (null if none)")
    def get(self, request, room_id):
        room, _actor = self.access(request, room_id)
        state = selectors.playback_get(room=room)
        movie = selectors.movie_get(room=room, movie_id=state.movie_id) if state.movie_id else None
        if movie is None:
            # JSON null: DRF's renderer would send an empty body, which is not JSON at all.
            return JsonResponse(None, safe=False)
        return Response(MovieSerializer(movie).data)


class PlaybackView(RoomView):
    permission_classes = [GuestAllowed]

    @extend_schema(responses={200: PlaybackSerializer, **ERRORS}, summary="Playback state")
    def get(self, request, room_id):
        try:
            room, _actor = self.access(request, room_id)
            state = selectors.playback_get(room=room)
        except DatabaseError as exc:  # the database is down: the copies in Redis, marked stale
            copied = greeting.copied_room(exc, room_id)
            actor = selectors.room_actor(user=request.user, room=copied.room, auth=request.auth)
            selectors.require_member(actor)  # with the membership's copy
            return copies.stale_response(PlaybackSerializer(selectors.playback_view(copied.playback)).data)
        return Response(PlaybackSerializer(selectors.playback_view(state)).data)

    @extend_schema(
        request=PlaybackChange,
        responses={
            200: PlaybackSerializer,
            409: OpenApiResponse(description="conflict: details.current is the current state"),
            **ERRORS,
        },
        summary="Change playback (PLAY_CONTROL; the movie also CHANGE_CURRENT_MOVIE)",
    )
    def put(self, request, room_id):
        room, actor = self.access(request, room_id, member=False)  # the service: PLAY_CONTROL
        change = playback_change(request.data)  # the socket's playback message, the same rules
        state = services.playback_update(
            actor=actor, room=room, origin=Origin.of(request), **change.changes()
        )
        return Response(PlaybackSerializer(selectors.playback_view(state)).data)
