from django.urls import path

from apps.rooms import api

urlpatterns = [
    path("rooms", api.RoomListView.as_view(), name="rooms"),
    path("rooms/<str:room_id>", api.RoomDetailView.as_view(), name="room"),
    path("rooms/<str:room_id>/join", api.JoinView.as_view(), name="room-join"),
    path("rooms/<str:room_id>/leave", api.LeaveView.as_view(), name="room-leave"),
    path("rooms/<str:room_id>/guest", api.GuestJoinView.as_view(), name="room-guest"),
    path("rooms/<str:room_id>/invites", api.InviteView.as_view(), name="room-invites"),
    path("rooms/<str:room_id>/members", api.MemberListView.as_view(), name="room-members"),
    path("rooms/<str:room_id>/members/me", api.MemberMeView.as_view(), name="room-member-me"),
    path("rooms/<str:room_id>/members/<str:user_id>", api.MemberDetailView.as_view(), name="room-member"),
    *[
        path(
            f"rooms/<str:room_id>/members/<str:user_id>/{action}",
            api.MemberActionView.as_view(action_name=action),
            name=f"room-member-{action}",
        )
        for action in ("kick", "ban", "unban", "approve")
    ],
    path("rooms/<str:room_id>/audit-log", api.AuditLogView.as_view(), name="room-audit-log"),
    path("rooms/<str:room_id>/movies", api.MovieListView.as_view(), name="room-movies"),
    path("rooms/<str:room_id>/movies/reorder", api.ReorderView.as_view(), name="room-movies-reorder"),
    path("rooms/<str:room_id>/movies/current", api.CurrentMovieView.as_view(), name="room-movie-current"),
    path("rooms/<str:room_id>/movies/<str:movie_id>", api.MovieDetailView.as_view(), name="room-movie"),
    path("rooms/<str:room_id>/playback", api.PlaybackView.as_view(), name="room-playback"),
]
