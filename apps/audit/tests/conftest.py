"""Helpers of the audit tests: an API client calling from a given address and user agent, the
events written since a point, and ``audit_verify``'s answer for an intact or a broken chain."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Max
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent

CREATOR_IP, CREATOR_UA = "203.0.113.7", "chain-test/1.0 (creator)"
MEMBER_IP, MEMBER_UA = "2001:db8::5", "chain-test/1.0 (member)"


def api_as(token: str | None, *, ip: str = CREATOR_IP, ua: str = CREATOR_UA) -> APIClient:
    client = APIClient(REMOTE_ADDR=ip, HTTP_USER_AGENT=ua)
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def last_seq() -> int:
    return AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0


def events_since(seq: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(seq__gt=seq).order_by("seq"))


def verify_output() -> str:
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def assert_verify_names(seq: int) -> str:
    """``audit_verify`` fails and names ``seq`` as where the chain breaks."""
    with pytest.raises(CommandError) as caught:
        call_command("audit_verify", stdout=io.StringIO())
    message = str(caught.value)
    assert f"at seq {seq} " in message, message
    return message
