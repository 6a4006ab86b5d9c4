from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "apps.mail"
    verbose_name = "Outgoing e-mail"
    default_auto_field = "django.db.models.BigAutoField"
