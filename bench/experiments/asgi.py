"""synctv.asgi under experiments.variant_settings plus the BENCH_VARIANT patches."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))  # the repo root
os.environ["DJANGO_SETTINGS_MODULE"] = "experiments.variant_settings"

from experiments import patches
from synctv.asgi import application  # noqa: F401

patches.apply()
