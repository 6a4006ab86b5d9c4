from django.apps import AppConfig
from django.db.models.signals import pre_save


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from auditlog.models import LogEntry

        from apps.audit import checks  # noqa: F401 - registers the system checks
        from apps.audit.model_history import fill_request_details

        pre_save.connect(fill_request_details, sender=LogEntry, dispatch_uid="synctv-auditlog-request")
