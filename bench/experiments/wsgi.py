"""synctv.wsgi under experiments.variant_settings plus the BENCH_VARIANT patches."""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "experiments.variant_settings"

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()

from experiments import patches  # noqa: E402

patches.apply()
