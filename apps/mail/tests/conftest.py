from tests.mailserver import celery_worker, smtp_backend, smtp_server  # noqa: F401 (fixtures)
