"""Webhook delivery on Celery and Redis.

The public surface: produce with :func:`deliver` (``deliver.delay(url, event)``),
read back with :func:`get_store`, describe events with the models in
:mod:`webhooks.events`.
"""

from ._version import __version__
from .celery_app import app
from .errors import DeliveryNotFound, InvalidEvent, InvalidInput, InvalidURL, WebhooksError
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
from .retry import BackoffPolicy
from .settings import Settings, get_settings
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
    "Event",
    "InvalidEvent",
    "InvalidInput",
    "InvalidURL",
    "Screenshot",
    "ScreenshotSet",
    "ScreenshotSetApproved",
    "ScreenshotStatus",
    "Settings",
    "WebhooksError",
    "__version__",
    "app",
    "deliver",
    "event_type",
    "get_settings",
    "get_store",
    "parse_event",
]
