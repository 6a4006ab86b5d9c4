"""Helpers shared by the test modules of several apps."""

from __future__ import annotations

from django.contrib.admin.utils import quote
from django.db.models import Model
from django.urls import reverse


def admin_url(obj: Model, view: str = "change") -> str:
    """The admin page ``view`` ("change", "delete", "history") of ``obj``.

    The key goes through the admin's own quoting: the admin reads ``_`` followed by one of its
    escape codes (``_5F`` is ``_``, ``_2F`` is ``/``, ...) as an escape, so a random id written raw
    into the URL now and then names another object (measured: about one signing-key id in 340).
    """
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[quote(obj.pk)])
