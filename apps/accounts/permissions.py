"""DRF permission classes about who the caller is (room rights live in apps.permissions)."""

from rest_framework.permissions import BasePermission


class IsRegisteredUser(BasePermission):
    """An authenticated account, not a guest: the default for every API view. Guest tokens
    open only the room views that say they allow guests."""

    message = "This needs a registered account."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and not getattr(user, "is_guest", False))
