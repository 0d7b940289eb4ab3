"""The Celery application: ``celery -A webhooks worker`` finds it as ``webhooks.app``.

Producers publish through it and workers run it. The task module and the
worker's bootsteps are named by string, so building the app imports neither:
the worker loads them when it starts.
"""

from __future__ import annotations

import os

from celery import Celery

from .. import logs

__all__ = ["DELIVER", "app"]

#: The delivery task's name, as Flower and every message show it.
DELIVER = "webhooks.tasks.deliver"

app = Celery("webhooks", include=["webhooks.worker.task"])
# The package's own configuration, unless a deployment names its own the usual
# Celery way (see the repository's celeryconfig.py).
app.config_from_object(os.environ.get("CELERY_CONFIG_MODULE") or "webhooks.broker.config")
# Every worker checks what it relies on, then promotes due parked retries, so
# production needs no extra process.
app.steps["worker"].add("webhooks.worker.steps:PreflightStep")
app.steps["worker"].add("webhooks.worker.steps:PromoterStep")
app.steps["worker"].add("webhooks.worker.steps:OutboxStep")
# WEBHOOKS_LOG_FORMAT=json: Celery's logging is set up as JSON; this runs before the
# worker sets up logging, which is before it imports the task module.
logs.install()
