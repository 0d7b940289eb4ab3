"""Webhook delivery on Celery and Redis.

The public surface: register endpoints with :func:`get_endpoints`, send with
:func:`publish` (fan-out to endpoints) or ``deliver.delay(url, event)`` (one URL),
replay with :func:`redeliver` and :func:`recover`, read back with
:func:`get_store`; receivers check requests with :func:`verify`.
"""

from ._version import __version__
from .celery_app import app
from .endpoints import Endpoint, EndpointStore, get_endpoints
from .errors import (
    DeliveryNotFound,
    EndpointDisabled,
    EndpointNotFound,
    InvalidEvent,
    InvalidInput,
    InvalidURL,
    NotFound,
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
from .models import Attempt, AttemptError, Delivery, DeliveryStatus
from .publish import deliver_many, publish
from .replay import recover, redeliver
from .retry import BackoffPolicy
from .settings import Settings, get_settings
from .signing import verify
from .store import DeliveryStore, get_store
from .tasks import deliver

__all__ = [
    "EVENT_TYPES",
    "Ad",
    "AdStatus",
    "Attempt",
    "AttemptError",
    "BackoffPolicy",
    "Delivery",
    "DeliveryNotFound",
    "DeliveryStatus",
    "DeliveryStore",
    "Endpoint",
    "EndpointDisabled",
    "EndpointNotFound",
    "EndpointStore",
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
    "parse_event",
    "publish",
    "recover",
    "redeliver",
    "verify",
]
