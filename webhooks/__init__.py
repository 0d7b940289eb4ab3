"""Webhook delivery on Celery and Redis.

The public surface: register endpoints with :func:`get_endpoints`, send with
:func:`publish` (fan-out to endpoints) or ``deliver.delay(url, event)`` (one URL),
replay with :func:`redeliver` and :func:`recover`, read back with
:func:`get_store`; receivers check requests with :func:`verify`. Each of these
works on the default :class:`System`, built from the ``WEBHOOKS_*`` environment
(:func:`get_default`, :func:`set_default`); a :class:`Producer` works on any.

Importing the package is light: what needs Celery, kombu or Redis (the task,
the producer API, the System and its stores) is imported on first use, so a
receiver that only calls :func:`verify` never loads them. The event models of
this product's own catalog are in :mod:`webhooks.catalog`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ._version import __version__
from .errors import (
    ArchiveUnavailable,
    DeliveryConflict,
    DeliveryFinished,
    DeliveryNotFound,
    EndpointDisabled,
    EndpointNotFound,
    EnqueueFailed,
    InvalidEvent,
    InvalidInput,
    InvalidURL,
    MissingExtra,
    NotFound,
    TenantExists,
    TenantNotFound,
    TokenInvalid,
    WebhooksError,
    WebhookVerificationFailed,
)
from .events import EVENT_TYPES, Event, event_type, parse_event
from .models import Attempt, AttemptError, Delivery, DeliveryStatus, Endpoint, Tenant
from .retry import BackoffPolicy
from .settings import Settings, bad_setting
from .signing import verify

if TYPE_CHECKING:
    from .broker.app import WebhooksApp
    from .producer import Producer, deliver_many, publish, recover, redeliver, send_test
    from .storage.deliveries import DeliveryStore
    from .storage.endpoints import EndpointStore
    from .storage.tenants import TenantStore
    from .system import (
        System,
        get_default,
        get_endpoints,
        get_settings,
        get_store,
        get_tenants,
        set_default,
    )
    from .web.tokens import portal_token
    from .worker.task import deliver

    app: WebhooksApp

# Each name below is imported from its module on first use.
_LAZY = {
    "deliver": "webhooks.worker.task",
    "Producer": "webhooks.producer",
    "deliver_many": "webhooks.producer",
    "publish": "webhooks.producer",
    "recover": "webhooks.producer",
    "redeliver": "webhooks.producer",
    "send_test": "webhooks.producer",
    "System": "webhooks.system",
    "get_default": "webhooks.system",
    "set_default": "webhooks.system",
    "get_settings": "webhooks.system",
    "get_store": "webhooks.system",
    "get_endpoints": "webhooks.system",
    "get_tenants": "webhooks.system",
    "DeliveryStore": "webhooks.storage.deliveries",
    "EndpointStore": "webhooks.storage.endpoints",
    "TenantStore": "webhooks.storage.tenants",
    "portal_token": "webhooks.web.tokens",
}

# Names this package exported before the catalog had a module of its own.
_MOVED_TO_CATALOG = {
    "Ad",
    "AdStatus",
    "Screenshot",
    "ScreenshotSet",
    "ScreenshotSetApproved",
    "ScreenshotStatus",
}


def __getattr__(name: str) -> Any:
    if name == "app":
        # The default System's Celery app, which ``celery -A webhooks`` runs; looked up
        # each time, since set_default may replace the System.
        try:
            return importlib.import_module("webhooks.system").get_default().app
        except ValidationError as exc:
            # Celery would print the traceback of a bad setting and go on to say it
            # could not load the app: the worker refuses in one line naming it instead.
            raise SystemExit(f"webhooks: {bad_setting(exc)}") from None
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _MOVED_TO_CATALOG:
        warnings.warn(
            f"webhooks.{name} is deprecated: import it from webhooks.catalog",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module("webhooks.catalog"), name)
    raise AttributeError(f"module 'webhooks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "EVENT_TYPES",
    "ArchiveUnavailable",
    "Attempt",
    "AttemptError",
    "BackoffPolicy",
    "Delivery",
    "DeliveryConflict",
    "DeliveryFinished",
    "DeliveryNotFound",
    "DeliveryStatus",
    "DeliveryStore",
    "Endpoint",
    "EndpointDisabled",
    "EndpointNotFound",
    "EndpointStore",
    "EnqueueFailed",
    "Event",
    "InvalidEvent",
    "InvalidInput",
    "InvalidURL",
    "MissingExtra",
    "NotFound",
    "Producer",
    "Settings",
    "System",
    "Tenant",
    "TenantExists",
    "TenantNotFound",
    "TenantStore",
    "TokenInvalid",
    "WebhookVerificationFailed",
    "WebhooksError",
    "__version__",
    "app",
    "deliver",
    "deliver_many",
    "event_type",
    "get_default",
    "get_endpoints",
    "get_settings",
    "get_store",
    "get_tenants",
    "parse_event",
    "portal_token",
    "publish",
    "recover",
    "redeliver",
    "send_test",
    "set_default",
    "verify",
]
