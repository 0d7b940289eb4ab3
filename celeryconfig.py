"""A deployment's own Celery configuration: ours, plus what you change.

The worker reads its configuration from inside the package
(``webhooks.broker.config``), so installing ``webhooks`` puts no module of this
name on anyone's path. To change a Celery setting, copy this file next to your
deployment, change what you need below the import, and point Celery at it the
usual way::

    CELERY_CONFIG_MODULE=celeryconfig celery -A webhooks worker --loglevel=INFO

Keep the guarantees in ``webhooks/broker/config.py`` (JSON only, acks late, the
derived visibility timeout) unless you know why they are there.
"""

from webhooks.broker.config import *  # noqa: F403

# For example: worker_prefetch_multiplier = 2
