"""The Celery application of a deployment: :func:`create_app` builds it from settings.

Each :class:`~webhooks.system.System` has one (``system.app``); ``celery -A webhooks
worker`` finds the default system's as ``webhooks.app``. Producers publish through
it and workers run it. The task module and the worker's bootsteps are named by
string, so building the app imports neither: the worker loads them when it starts.
"""

from __future__ import annotations

import importlib
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError

from ..settings import Settings
from .config import celery_config

__all__ = ["DELIVER", "WebhooksApp", "broker_failure", "create_app"]

#: The delivery task's name, as Flower and every message show it.
DELIVER = "webhooks.tasks.deliver"


class WebhooksApp(Celery):
    """A Celery app that knows the deployment it belongs to (``owner``: its System),
    so that a task or a bootstep handed the app finds the stores it works with."""

    owner: Any = None


def create_app(settings: Settings, config_module: str | None = None) -> WebhooksApp:
    """The Celery app of a deployment with ``settings``: its configuration from
    :func:`~.config.celery_config`, with what the module named ``config_module`` sets
    on top (a deployment's ``CELERY_CONFIG_MODULE``)."""
    app = WebhooksApp("webhooks", include=["webhooks.worker.task"], set_as_current=False)
    config = celery_config(settings)
    if config_module:
        module = importlib.import_module(config_module)
        config |= {name: value for name, value in vars(module).items() if name.islower()}
    app.config_from_object(config)
    # Every worker checks what it relies on, then promotes due parked retries, so
    # production needs no extra process.
    app.steps["worker"].add("webhooks.worker.steps:PreflightStep")
    app.steps["worker"].add("webhooks.worker.steps:PromoterStep")
    app.steps["worker"].add("webhooks.worker.steps:OutboxStep")
    app.steps["worker"].add("webhooks.worker.steps:ArchiveStep")
    return app


def broker_failure(error: BaseException) -> str | None:
    """What went wrong with the broker, in one line; None for an error that is not the
    broker's."""
    return str(error) if isinstance(error, KombuError) else None
