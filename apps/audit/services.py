"""Writing audit events. Call inside the transaction of the change being audited."""

from __future__ import annotations

from typing import Any

from apps.audit.models import AuditEvent
from apps.core.context import Origin


def audit_record(
    *,
    action: str,
    origin: Origin,
    user=None,
    resource_type: str = "",
    resource_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. The caller's transaction makes it atomic with the change."""
    return AuditEvent.objects.create(
        user=user if (user is not None and getattr(user, "pk", None)) else None,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id),
        details=details or {},
        ip=origin.ip,
        user_agent=origin.user_agent,
    )
