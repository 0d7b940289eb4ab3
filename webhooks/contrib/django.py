"""Publishing from Django once the transaction commits.

    from webhooks.contrib.django import publish_on_commit

    with transaction.atomic():
        screenshot_set.approve()
        publish_on_commit(event, tenant=account.tenant_id)

The event is checked at the call, so a bad one fails where it was written. It is
published by ``transaction.on_commit``: after a commit, never after a rollback,
and at once outside an atomic block (as Django runs on_commit callbacks). A
process that dies between the commit and the publish loses the event; when that
is not acceptable, write it to the outbox instead (:func:`webhooks.outbox.add`
with the connection alias).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction

from ..producer import check_event, publish_checked

__all__ = ["publish_on_commit"]


def publish_on_commit(event: Any, *, tenant: str, using: str | None = None) -> None:
    """Publish ``event`` to ``tenant``'s endpoints when the transaction on ``using`` (the
    default database when None) commits. Raises :class:`~webhooks.InvalidInput` at once
    for a bad event or tenant id."""
    checked = check_event(event, tenant)
    transaction.on_commit(partial(publish_checked, *checked), using=using)
