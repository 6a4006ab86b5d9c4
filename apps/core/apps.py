from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        # The servers' access loggers write full request lines, ?token= included; they are
        # configured before Django starts and do not propagate to LOGGING's handlers.
        from apps.core import logredact

        logredact.install()
