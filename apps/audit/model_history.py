"""django-auditlog entries (the model change history moderators browse in the admin): who made
the change and from which address, taken from the request being served when the entry is saved.

Reading the request at save time, not at the start of the request, is what gives API changes an
actor: DRF authenticates the bearer token inside the view and sets ``user`` on the underlying
HttpRequest, after every middleware has run. The address is SyncTV's client address
(``TRUSTED_PROXY_COUNT``), not a spoofable first X-Forwarded-For entry.
"""

from __future__ import annotations

from apps.core.middleware import current_request
from apps.core.net import client_ip


def fill_request_details(sender, instance, **kwargs) -> None:
    """pre_save receiver for auditlog's LogEntry."""
    request = current_request()
    if request is None:  # a command, a task, a socket: nothing to say
        return
    user = getattr(request, "user", None)
    if instance.actor_id is None and user is not None and user.is_authenticated:
        instance.actor_id = user.pk
        instance.actor_email = getattr(user, "email", None)
    if instance.remote_addr is None:
        instance.remote_addr = client_ip(request)
