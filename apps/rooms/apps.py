from django.apps import AppConfig


class RoomsConfig(AppConfig):
    name = "apps.rooms"
    label = "rooms"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from apps.rooms.models import Movie, Room, RoomMember

        auditlog.register(Room, exclude_fields=["password"])
        # A banned guest's address key is for matching new guests, not for the change history.
        auditlog.register(RoomMember, exclude_fields=["ban_address"])
        auditlog.register(Movie)
