"""Django configured for the tests: the test PostgreSQL as its default database.

No test runner (it would create databases): tests isolate themselves by schema, and the
scheduler's SQL names its schema, so plain `django.setup()` is all it takes."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from tests.support.db import TEST_DSN


def database_settings(dsn: str = TEST_DSN) -> dict[str, object]:
    """Django's DATABASES entry for a postgresql:// URL."""
    url = urlsplit(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(url.path.lstrip("/")) or "postgres",
        "USER": unquote(url.username or ""),
        "PASSWORD": unquote(url.password or ""),
        "HOST": url.hostname or "",
        "PORT": str(url.port or ""),
    }


def configure_django() -> None:
    """Configure and set up Django once per process."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DATABASES={"default": database_settings()},
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
