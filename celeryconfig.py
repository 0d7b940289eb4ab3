"""A deployment's own Celery configuration: only what it changes.

The worker's configuration comes from the package (``webhooks.broker.config``,
derived from the ``WEBHOOKS_*`` settings), so installing ``webhooks`` puts no
module of this name on anyone's path. To change a Celery setting, copy this file
next to your deployment, set what you need below, and point Celery at it the
usual way; what it sets goes on top of ours::

    CELERY_CONFIG_MODULE=celeryconfig celery -A webhooks worker --loglevel=INFO

Keep the guarantees of ``webhooks/broker/config.py`` (JSON only, acks late, the
derived visibility timeout) unless you know why they are there. A module written
for an earlier version, which starts with ``from webhooks.broker.config import *``,
still works.
"""

# For example: worker_prefetch_multiplier = 2
