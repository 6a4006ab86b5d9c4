"""Writing audit events. Call inside the transaction of the change being audited."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db import connections, router, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.actions import AuditAction
from apps.audit.chain import anchor_signature, event_digest, verify_chain
from apps.audit.models import AuditAnchor, AuditChainHead, AuditEvent
from apps.core import rows
from apps.core.context import Origin

HEAD_ID = 1


def audit_record(
    *,
    action: AuditAction,
    origin: Origin,
    user: User | AnonymousUser | None = None,
    resource_type: str = "",
    resource_id: str = "",
    room_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain. In the caller's transaction, so it is atomic with the
    change; the chain head's row lock orders concurrent appends (held until that commit).

    Two statements on PostgreSQL (three on SQLite), their SQL built once per process instead of
    by the ORM on every call (``_head_statements``, ``apps.core.rows.insert_then``): advance the
    head (which locks it and hands back the sequence number and the previous hash); insert the
    event and store its hash in the head (one statement with two data-modifying ``WITH``
    queries on PostgreSQL). Every audited write pays for this while holding the chain lock, and
    the ORM's query building cost more than the round trips: 4.0 ms against 1.9 ms per append
    with its commit on the bench host's PostgreSQL (bench/README.md). AuditEvent's save signals
    are therefore not sent; nothing listens to them (``rows`` checks).

    No savepoint of its own (``savepoint=False``): an append that fails fails the caller's
    transaction, which is what atomic-with-the-change means anyway, and the SAVEPOINT/RELEASE pair
    was two round trips on every audited write, the second one while holding the chain lock.

    ``action`` is an :class:`~apps.audit.actions.AuditAction`; anything else is refused
    (ValueError) before the chain is touched: a misspelt action would be a row no reader finds."""
    # The plain string is stored and hashed, exactly what the free-text actions were.
    action_name = AuditAction(action).value
    alias = router.db_for_write(AuditEvent)
    advance, seal = _head_statements(alias)
    with transaction.atomic(using=alias, savepoint=False), connections[alias].cursor() as cursor:
        cursor.execute(advance, [HEAD_ID])
        head = cursor.fetchone()
        if head is None:  # the first event ever: create the head, then take it like everyone else
            AuditChainHead.objects.using(alias).get_or_create(pk=HEAD_ID)
            cursor.execute(advance, [HEAD_ID])
            head = cursor.fetchone()
        seq, prev_hash = head
        event = AuditEvent(
            created_at=timezone.now(),
            user_id=user.pk if (user is not None and getattr(user, "pk", None)) else None,
            action=action_name,
            resource_type=resource_type,
            resource_id=str(resource_id),
            room_id=str(room_id or ""),
            details=details or {},
            ip=origin.ip,
            user_agent=origin.user_agent,
            seq=seq,
            prev_hash=prev_hash,
        )
        event.hash = event_digest(event, prev_hash)
        # The insert and the seal in one round trip on PostgreSQL, while the chain lock is held.
        rows.insert_then(event, seal, [event.hash, HEAD_ID], using=alias)
    return event


@functools.cache
def _head_statements(alias: str) -> tuple[str, str]:
    qn = connections[alias].ops.quote_name
    meta = AuditChainHead._meta
    head, pk = qn(meta.db_table), qn(meta.pk.column)
    seq, digest = qn(meta.get_field("seq").column), qn(meta.get_field("hash").column)
    return (
        # UPDATE ... RETURNING: PostgreSQL, and SQLite since 3.35 (apps.audit.checks).
        f"UPDATE {head} SET {seq} = {seq} + 1 WHERE {pk} = %s RETURNING {seq}, {digest}",  # noqa: S608 - quoted names from model metadata; values are parameters
        f"UPDATE {head} SET {digest} = %s WHERE {pk} = %s",  # noqa: S608 - quoted names from model metadata; values are parameters
    )


class ChainBroken(Exception):
    """The chain does not verify: purging would sign over the damage."""


@dataclass(frozen=True)
class Purge:
    purged: int  # events removed
    up_to_seq: int | None  # the last one removed (None: nothing was older)


def purge_audit_log(*, before: datetime, origin: Origin, dry_run: bool = False) -> Purge:
    """Remove every event up to the last one created before ``before`` and keep a signed anchor of
    the last one removed, so ``audit_verify`` checks the rest from there (docs/security.md, "The
    audit log"). The purge is itself audited, at the head of the chain. Refuses (ChainBroken) a
    chain that does not verify. With ``dry_run`` nothing changes."""
    # In UTC, as the database hands it back: the anchor's signature covers its text.
    before = before.astimezone(UTC)
    head = AuditChainHead.objects.filter(pk=HEAD_ID).values_list("seq", "hash").first()
    # Up to the head read now: events appended meanwhile are not "missing".
    checked, broken = verify_chain(head=head)
    if broken is not None:
        raise ChainBroken(f"{broken} ({checked} event(s) before it are intact)")
    with transaction.atomic():
        # No lock of the chain's head here: the anchor names an old event, and deleting old rows
        # does not touch the appends. audit_record takes the lock last, for its append only.
        last = AuditEvent.objects.filter(created_at__lt=before).order_by("-seq").first()
        if last is None:
            return Purge(purged=0, up_to_seq=None)
        count = AuditEvent.objects.filter(seq__lte=last.seq).count()
        if dry_run:
            return Purge(purged=count, up_to_seq=last.seq)
        AuditEvent.objects.filter(seq__lte=last.seq).delete()
        anchor = AuditAnchor(
            created_at=timezone.now(), seq=last.seq, hash=last.hash, purged=count, before=before
        )
        anchor.signature = anchor_signature(anchor)
        anchor.save()
        audit_record(
            action=AuditAction.AUDIT_PURGED,
            origin=origin,
            details={"before": before.isoformat(), "up_to_seq": last.seq, "purged": count},
        )
    return Purge(purged=count, up_to_seq=last.seq)
