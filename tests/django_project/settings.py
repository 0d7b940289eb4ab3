"""Settings of the Django test project: the tests' PostgreSQL database."""

from tests.conftest import PG_ADMIN, PG_DATABASE

_server = PG_ADMIN.rsplit("/", 1)[0].removeprefix("postgresql://")
_user, _, _host = _server.rpartition("@")
_host, _, _port = _host.partition(":")

SECRET_KEY = "django-test-project-only"
USE_TZ = True
INSTALLED_APPS = ["tests.django_project.shop"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": PG_DATABASE,
        "USER": _user.partition(":")[0] or "postgres",
        "HOST": _host,
        "PORT": _port or "5432",
    },
}
