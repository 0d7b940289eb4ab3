"""Hooks for failures, for application code to tell its own customers.

Celery signals, sent in the worker once the record they speak of is written::

    from webhooks.signals import delivery_exhausted

    @delivery_exhausted.connect
    def tell_the_customer(sender, delivery, **kwargs):
        ...

- :data:`delivery_exhausted` (``delivery``: a :class:`~webhooks.Delivery` with its
  attempts): its retries ran out, or its endpoint was disabled by this attempt.
- :data:`endpoint_disabled` (``endpoint``: an :class:`~webhooks.Endpoint`, and
  ``reason``: ``gone`` or ``failing``): a worker disabled it (a 410, or no 2XX
  for ``WEBHOOKS_DISABLE_AFTER_SECONDS``).
- :data:`delivery_recovered` (``delivery``): delivered after failed attempts.

A receiver that raises is logged and never breaks the delivery. With
``WEBHOOKS_OPERATIONAL_URL`` set, the same three also go out as signed webhooks.
"""

from __future__ import annotations

from celery.utils.dispatch import Signal

__all__ = ["OPERATIONAL_TYPES", "delivery_exhausted", "delivery_recovered", "endpoint_disabled"]

#: The types of the operational webhooks: no event a producer sends can have one (events
#: are validated against their own types), which is how a worker tells them apart.
OPERATIONAL_TYPES = frozenset({"delivery.exhausted", "endpoint.disabled", "delivery.recovered"})

delivery_exhausted = Signal(name="delivery_exhausted", providing_args=["delivery"])
endpoint_disabled = Signal(name="endpoint_disabled", providing_args=["endpoint", "reason"])
delivery_recovered = Signal(name="delivery_recovered", providing_args=["delivery"])
