"""Writing audit events. Call inside the transaction of the change being audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.audit.chain import event_digest
from apps.audit.models import AuditChainHead, AuditEvent
from apps.core.context import Origin


def audit_record(
    *,
    action: str,
    origin: Origin,
    user=None,
    resource_type: str = "",
    resource_id: str = "",
    room_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain. In the caller's transaction, so it is atomic with the
    change; the chain head's row lock orders concurrent appends (held until that commit).

    No savepoint of its own (``savepoint=False``): an append that fails fails the caller's
    transaction, which is what atomic-with-the-change means anyway, and the SAVEPOINT/RELEASE pair
    was two round trips on every audited write, the second one while holding the chain lock."""
    with transaction.atomic(savepoint=False):
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        event = AuditEvent(
            created_at=timezone.now(),
            user_id=user.pk if (user is not None and getattr(user, "pk", None)) else None,
            action=action,
            resource_type=resource_type,
            resource_id=str(resource_id),
            room_id=str(room_id or ""),
            details=details or {},
            ip=origin.ip,
            user_agent=origin.user_agent,
            seq=head.seq + 1,
            prev_hash=head.hash,
        )
        # The JSON round trip makes the hashed details equal to what the database gives back.
        event.hash = event_digest(event, head.hash)
        event.save(force_insert=True)
        head.seq, head.hash = event.seq, event.hash
        head.save(update_fields=["seq", "hash"])
    return event
