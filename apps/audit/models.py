"""Security audit events (docs/security.md, "The audit log"): who, what, on what, from where, when.

The log is tamper-evident: every event stores ``hash = sha256(content + previous hash)`` and a
gap-free sequence number, so editing or deleting a row breaks the chain at that row
(``manage.py audit_verify`` finds it).
"""

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    created_at = models.DateTimeField(db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        # The chain must outlive the user row and the id stays in the hash: deleting a user must
        # not touch the events (SET_NULL rewrote their user_id and broke the chain at each one).
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        help_text="Who acted (empty for anonymous or system actions).",
    )
    action = models.CharField(max_length=64, db_index=True)
    resource_type = models.CharField(max_length=32, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    room_id = models.CharField(max_length=32, blank=True, db_index=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    seq = models.BigIntegerField(unique=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["resource_type", "resource_id", "-created_at"]),
            models.Index(fields=["room_id", "-seq"]),
        ]

    def __str__(self) -> str:
        when = f"{self.created_at:%Y-%m-%d %H:%M:%S}"
        return f"#{self.seq} {when} {self.action} {self.resource_type}:{self.resource_id}"


class AuditChainHead(models.Model):
    """One row: the last sequence number and hash. Locking it orders appends to the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit chain head #{self.seq}"


class AuditAnchor(models.Model):
    """What a purge removed (``manage.py purge_audit_log``; docs/security.md, "The audit log"):
    the chain now starts after event ``seq``, whose hash was ``hash``. Signed with the site's
    secret key (apps.audit.chain.anchor_signature), so a row written to hide deleted events does
    not verify; deleting the newest anchor leaves a gap that ``audit_verify`` names."""

    created_at = models.DateTimeField()
    seq = models.BigIntegerField(unique=True, help_text="The last event the purge removed.")
    hash = models.CharField(max_length=64, help_text="That event's hash: the next one's prev_hash.")
    purged = models.BigIntegerField(help_text="How many events this purge removed.")
    before = models.DateTimeField(help_text="The date asked for: events created before it went.")
    signature = models.CharField(max_length=128)

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"audit anchor after #{self.seq} ({self.purged} purged before {self.before:%Y-%m-%d})"
