"""A minimal Django project that enqueues jobs in its transactions (see README.md here)."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

SCHEDULER_DSN = os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SCHEDULER_SCHEMA = os.environ.get("SCHEDULER_SCHEMA", "scheduler")

_url = urlsplit(SCHEDULER_DSN)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_url.path.lstrip("/")),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
        # The example's tables live beside the scheduler's, so dropping that schema
        # cleans up everything; a real project keeps its own search_path.
        "OPTIONS": {"options": f"-c search_path={SCHEDULER_SCHEMA},public"},
    }
}
INSTALLED_APPS = ["shop"]
ROOT_URLCONF = "urls"
SECRET_KEY = "example-only"
ALLOWED_HOSTS = ["*"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
