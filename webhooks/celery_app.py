"""The Celery application: ``celery -A webhooks worker`` finds it as ``webhooks.app``."""

from __future__ import annotations

from celery import Celery

__all__ = ["app"]

app = Celery("webhooks", include=["webhooks.tasks"])
# Configuration lives in the root module celeryconfig.py, next to the deployment files.
app.config_from_object("celeryconfig")


def _add_promoter() -> None:
    # Every worker promotes due parked retries, so production needs no extra process.
    from .promoter import PromoterStep

    app.steps["worker"].add(PromoterStep)


_add_promoter()
