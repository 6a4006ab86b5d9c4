from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "apps.mail"
    verbose_name = "Outgoing e-mail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.core import crypto

        def associated_data(row) -> bytes:
            from apps.mail import services

            return services._associated(row.pk)

        for column in ("text_body", "html_body"):
            crypto.register_column("mail.OutboundEmail", column, associated_data)
