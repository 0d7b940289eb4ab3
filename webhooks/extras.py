"""The package's optional parts, and the extras that install them.

``pip install celery-webhooks`` gives the producer API, the worker and ``verify``;
the rest comes with an extra. What needs one calls :func:`require` first, so that a
missing extra is one line naming it, not an ImportError from deep inside.
"""

from __future__ import annotations

from importlib.util import find_spec

from .errors import MissingExtra

__all__ = ["EXTRAS", "installed", "require"]

#: The top-level modules each extra installs, by the extra's name.
EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("fastapi", "uvicorn", "itsdangerous"),
    "outbox": ("psycopg",),
    "archive": ("psycopg", "psycopg_pool"),
    "otel": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
    "flower": ("flower",),
    "django": ("django",),
    "sqlalchemy": ("sqlalchemy",),
}


def _installed(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def installed(extra: str) -> bool:
    """Whether every module ``extra`` brings can be imported."""
    return all(_installed(module) for module in EXTRAS[extra])


def require(extra: str, what: str) -> None:
    """Raise :class:`~webhooks.errors.MissingExtra` unless ``extra`` is installed;
    ``what`` names what needs it (``"webhooks serve"``)."""
    if not installed(extra):
        raise MissingExtra(extra, what)
