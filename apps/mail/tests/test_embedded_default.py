"""The embedded default (docs/accounts.md, "E-mail"): with no EMAIL_URL and no broker, e-mail
is printed to the console by a task that runs eagerly; and the mail task is acknowledged only
after it ran (``acks_late``), so a worker lost mid-task does not lose the message."""

from __future__ import annotations

import json
import subprocess

from apps.mail.tasks import send_email
from tests.procs import ROOT, VENV_BIN, base_env

READ_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
from synctv.celery import app
print(json.dumps({
    "EMAIL_BACKEND": settings.EMAIL_BACKEND,
    "CELERY_TASK_ALWAYS_EAGER": settings.CELERY_TASK_ALWAYS_EAGER,
    "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    "app_eager": app.conf.task_always_eager,
    "SYNCTV_ENV": settings.SYNCTV_ENV,
}))
"""


def test_without_email_url_or_broker_mail_goes_to_the_console_eagerly(tmp_path):
    # base_env drops DATABASE_URL, REDIS_URL, CELERY_BROKER_URL and SYNCTV_ENV; EMAIL_URL too here.
    env = base_env(SYNCTV_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="synctv.settings")
    for name in ("EMAIL_URL", "DEFAULT_FROM_EMAIL"):
        env.pop(name, None)
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", READ_SETTINGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout.strip().splitlines()[-1])
    assert values == {
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "CELERY_TASK_ALWAYS_EAGER": True,
        "CELERY_BROKER_URL": "memory://",
        "app_eager": True,
        "SYNCTV_ENV": "development",
    }


def test_the_mail_task_is_acknowledged_late():
    assert send_email.acks_late is True
