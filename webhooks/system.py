"""What one deployment is made of, built in one place: the :class:`System`.

A System is built from :class:`~webhooks.settings.Settings` and owns the one Redis
client of its store, the Celery app of its broker and the sender of its attempts;
it hands each store its collaborators through the store's constructor::

    system = System(Settings(redis_url="redis://10.0.0.5:6379/0", key_prefix="eu"))
    system.endpoints.add("https://example.com/hooks", tenant="acct_42")
    Producer(system).publish(event, tenant="acct_42")

Most programs use one: the default, built from the ``WEBHOOKS_*`` environment on
first use (:func:`get_default`), which the public functions (``publish``,
``deliver.delay``, ``get_store()``, ...) and ``celery -A webhooks worker`` use.
:func:`set_default` replaces it, as dramatiq's ``set_broker`` does; tests build
their own. Two Systems with different settings live side by side in one process,
each seeing only its own data.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING

import redis

from . import extras, logs
from .broker.app import WebhooksApp, create_app
from .events import load_event_modules
from .sending.attempt import Sender
from .settings import Settings
from .storage.activity import Activity
from .storage.cipher import Cipher
from .storage.connection import connect
from .storage.counters import Counters
from .storage.deliveries import DeliveryStore
from .storage.destinations import Gate
from .storage.endpoints import EndpointStore
from .storage.keys import Keys
from .storage.limits import RateLimits
from .storage.schedule import Schedule
from .storage.sessions import SessionStore
from .storage.tenants import TenantStore

if TYPE_CHECKING:
    from .archive.store import Archive

__all__ = [
    "System",
    "get_default",
    "get_endpoints",
    "get_settings",
    "get_store",
    "get_tenants",
    "set_default",
]


class System:
    """One deployment's parts, wired from its settings.

    ``celery_config``: a module whose Celery settings go on top of ours (what
    ``CELERY_CONFIG_MODULE`` names for the default System). ``client``: a Redis
    client to use instead of one built from ``settings.redis_url``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        celery_config: str | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        # The event types this deployment publishes and validates, registered by
        # their modules as any user's would be.
        load_event_modules(self.settings.event_modules)
        self.keys = Keys(self.settings.key_prefix)
        self.redis = client if client is not None else connect(self.settings)
        self.archive = self._archive(self.settings)
        self.deliveries = DeliveryStore(self.redis, self.keys, self.settings, self.archive)
        self.cipher = Cipher.from_settings(self.settings)
        self.endpoints = EndpointStore(
            self.redis, self.keys, self.settings, self.deliveries, self.cipher
        )
        self.sessions = SessionStore(self.redis, self.keys)
        self.limits = RateLimits(self.redis, self.keys)
        self.tenants = TenantStore(
            self.redis, self.keys, self.deliveries, self.endpoints, self.sessions
        )
        self.schedule = Schedule(self.redis, self.keys)
        self.gate = Gate(self.redis, self.keys, self.settings)
        self.counters = Counters(self.redis, self.keys)
        self.activity = Activity(self.redis, self.keys)
        self.sender = Sender(self.settings)
        self._celery_config = celery_config

    @staticmethod
    def _archive(settings: Settings) -> Archive | None:
        """The PostgreSQL archive WEBHOOKS_ARCHIVE_DSN names, or None."""
        if settings.archive_dsn is None:
            return None
        extras.require("archive", "WEBHOOKS_ARCHIVE_DSN (the delivery log in PostgreSQL)")
        # Only here: psycopg is the archive extra's, which a deployment without one lacks.
        from .archive.store import Archive

        return Archive(settings.archive_dsn.get_secret_value(), settings.retention_seconds)

    @cached_property
    def app(self) -> WebhooksApp:
        """The Celery app producers publish through and workers run: built on first use,
        since a process that only reads the store needs none."""
        app = create_app(self.settings, self._celery_config)
        app.owner = self
        # WEBHOOKS_LOG_FORMAT=json takes over Celery's logging before a worker sets it
        # up; a worker finds its app (webhooks.app) before it does.
        logs.install(self.settings)
        return app

    @staticmethod
    def of(app: object) -> System:
        """The System a Celery app belongs to (what a task or a bootstep is handed)."""
        owner = getattr(app, "owner", None)
        if not isinstance(owner, System):
            raise RuntimeError(f"{app!r} is not the Celery app of a webhooks System")
        return owner

    def close(self) -> None:
        """Let go of the Redis and archive connections (a System is usable again after:
        it reconnects)."""
        self.redis.close()
        if self.archive is not None:
            self.archive.close()

    def __repr__(self) -> str:
        return f"<System prefix={self.keys.prefix!r}>"


_default: System | None = None
_lock = threading.Lock()


def get_default() -> System:
    """The process's System: the one :func:`set_default` gave, or else one built from
    the ``WEBHOOKS_*`` environment (and ``CELERY_CONFIG_MODULE``) on first use."""
    global _default
    system = _default
    if system is None:
        with _lock:
            if _default is None:
                _default = System(celery_config=os.environ.get("CELERY_CONFIG_MODULE"))
            system = _default
    return system


def set_default(system: System | None) -> System | None:
    """Make ``system`` the process's System (None: build one from the environment on
    next use); returns the one it replaces."""
    global _default
    with _lock:
        previous, _default = _default, system
    return previous


def get_settings() -> Settings:
    """The default System's settings."""
    return get_default().settings


def get_store() -> DeliveryStore:
    """The default System's delivery store."""
    return get_default().deliveries


def get_endpoints() -> EndpointStore:
    """The default System's endpoint store."""
    return get_default().endpoints


def get_tenants() -> TenantStore:
    """The default System's tenant store."""
    return get_default().tenants
