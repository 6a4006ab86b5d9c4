"""The hash chain of the audit log: how an event's hash is computed and how the chain is checked."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.core import signing

GENESIS = "0" * 64
ANCHOR_SALT = "synctv.audit.anchor"


def event_digest(event, prev_hash: str) -> str:
    """sha256 over the event's content (every field a reader relies on) and the previous hash."""
    content = {
        "seq": event.seq,
        "created_at": event.created_at.isoformat(),
        "user_id": event.user_id or "",
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "room_id": event.room_id,
        "details": event.details,
        "ip": event.ip or "",
        "user_agent": event.user_agent,
        "prev_hash": prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    event_id: int | None
    reason: str

    def __str__(self) -> str:
        return f"audit chain broken at seq {self.seq} (event id {self.event_id}): {self.reason}"


def _anchor_content(anchor) -> str:
    return json.dumps(
        [anchor.seq, anchor.hash, anchor.purged, anchor.before.isoformat(), anchor.created_at.isoformat()],
        separators=(",", ":"),
    )


def anchor_signature(anchor) -> str:
    """HMAC of an anchor's fields with the site's secret key (Django's signer, its own salt)."""
    return signing.Signer(salt=ANCHOR_SALT).signature(_anchor_content(anchor))


def anchor_is_signed(anchor) -> bool:
    """Whether the anchor's signature is the secret key's (or a SECRET_KEY_FALLBACKS key's)."""
    content = _anchor_content(anchor)
    try:
        return signing.Signer(salt=ANCHOR_SALT).unsign(f"{content}:{anchor.signature}") == content
    except signing.BadSignature:
        return False


def verify_chain(
    *, batch_size: int = 2000, head: tuple[int, str] | None = None
) -> tuple[int, ChainBreak | None]:
    """Walk the chain in order, from the newest purge's anchor (or the first event). Returns
    (events checked, first break or None). With ``head`` (seq, hash), read before the walk, the
    chain is checked up to it and events appended since are left alone."""
    from apps.audit.models import AuditAnchor, AuditChainHead, AuditEvent

    prev_hash, expected_seq, checked = GENESIS, 1, 0
    last_seq = 0
    anchor = AuditAnchor.objects.order_by("-seq").first()
    if anchor is not None:
        if not anchor_is_signed(anchor):
            return 0, ChainBreak(anchor.seq, None, "the purge anchor's signature does not verify")
        prev_hash, expected_seq, last_seq = anchor.hash, anchor.seq + 1, anchor.seq
    events = AuditEvent.objects.filter(seq__lte=head[0]) if head is not None else AuditEvent.objects.all()
    while True:
        batch = list(events.filter(seq__gt=last_seq).order_by("seq")[:batch_size])
        if not batch:
            break
        for event in batch:
            if event.seq != expected_seq:
                return checked, ChainBreak(
                    expected_seq, None, f"event missing (next present is seq {event.seq})"
                )
            if event.prev_hash != prev_hash:
                return checked, ChainBreak(event.seq, event.pk, "prev_hash does not match the previous event")
            if event_digest(event, prev_hash) != event.hash:
                return checked, ChainBreak(event.seq, event.pk, "content does not match its hash (edited)")
            prev_hash, expected_seq, last_seq = event.hash, expected_seq + 1, event.seq
            checked += 1
    if head is None:
        head = AuditChainHead.objects.filter(pk=1).values_list("seq", "hash").first()
    if head is not None and head[0] != last_seq:
        return checked, ChainBreak(head[0], None, f"the last {head[0] - last_seq} event(s) are missing")
    if head is not None and head[1] != prev_hash:
        return checked, ChainBreak(last_seq, None, "the chain head does not match the last event")
    return checked, None
