"""Background work for accounts: thin wrappers over services."""

from celery import shared_task

from apps.accounts import services


@shared_task
def purge_expired_sessions() -> int:
    """Delete login sessions that can no longer be refreshed (beat, hourly)."""
    return services.sessions_purge_expired()
