from django.apps import AppConfig


class RoomsConfig(AppConfig):
    name = "apps.rooms"
    label = "rooms"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from apps.rooms.models import Movie, Room, RoomMember

        auditlog.register(Room, exclude_fields=["password"])
        auditlog.register(RoomMember)
        auditlog.register(Movie)
