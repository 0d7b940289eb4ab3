"""Webhook delivery on Celery and Redis.

The public surface: register endpoints with :func:`get_endpoints`, send with
:func:`publish` (fan-out to endpoints) or ``deliver.delay(url, event)`` (one URL),
replay with :func:`redeliver` and :func:`recover`, read back with
:func:`get_store`; receivers check requests with :func:`verify`.

Importing the package is light: what needs Celery, kombu or Redis (the task,
the producer API, the stores) is imported on first use, so a receiver that only
calls :func:`verify` never loads them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    DeliveryConflict,
    DeliveryNotFound,
    EndpointDisabled,
    EndpointNotFound,
    EnqueueFailed,
    InvalidEvent,
    InvalidInput,
    InvalidURL,
    NotFound,
    TenantExists,
    TenantNotFound,
    TokenInvalid,
    WebhooksError,
    WebhookVerificationFailed,
)
from .events import (
    EVENT_TYPES,
    Ad,
    AdStatus,
    Event,
    Screenshot,
    ScreenshotSet,
    ScreenshotSetApproved,
    ScreenshotStatus,
    event_type,
    parse_event,
)
from .models import Attempt, AttemptError, Delivery, DeliveryStatus, Endpoint, Tenant
from .retry import BackoffPolicy
from .settings import Settings, get_settings
from .signing import verify

if TYPE_CHECKING:
    from .broker.app import app
    from .producer import deliver_many, publish, recover, redeliver
    from .storage.deliveries import DeliveryStore, get_store
    from .storage.endpoints import EndpointStore, get_endpoints
    from .storage.tenants import TenantStore, get_tenants
    from .web.tokens import portal_token
    from .worker.task import deliver

# Each name below is imported from its module on first use.
_LAZY = {
    "app": "webhooks.broker.app",
    "deliver": "webhooks.worker.task",
    "deliver_many": "webhooks.producer",
    "publish": "webhooks.producer",
    "recover": "webhooks.producer",
    "redeliver": "webhooks.producer",
    "DeliveryStore": "webhooks.storage.deliveries",
    "get_store": "webhooks.storage.deliveries",
    "EndpointStore": "webhooks.storage.endpoints",
    "get_endpoints": "webhooks.storage.endpoints",
    "TenantStore": "webhooks.storage.tenants",
    "get_tenants": "webhooks.storage.tenants",
    "portal_token": "webhooks.web.tokens",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'webhooks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "EVENT_TYPES",
    "Ad",
    "AdStatus",
    "Attempt",
    "AttemptError",
    "BackoffPolicy",
    "Delivery",
    "DeliveryConflict",
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
    "NotFound",
    "Screenshot",
    "ScreenshotSet",
    "ScreenshotSetApproved",
    "ScreenshotStatus",
    "Settings",
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
    "get_endpoints",
    "get_settings",
    "get_store",
    "get_tenants",
    "parse_event",
    "portal_token",
    "publish",
    "recover",
    "redeliver",
    "verify",
]
