"""Publishing from SQLAlchemy once the session commits.

    from webhooks.contrib.sqlalchemy import publish_on_commit

    with Session(engine) as session, session.begin():
        session.add(approval)
        publish_on_commit(session, event, tenant="acct_42")

The event is checked at the call, so a bad one fails where it was written. The
session keeps it until its transaction ends: published after a commit, dropped
on a rollback, or when the savepoint (``begin_nested``) it was added in rolls
back. A process that dies between the commit and the publish loses the event;
when that is not acceptable, use :func:`webhooks.outbox.add` with the session
instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.orm import Session, SessionTransaction

from ..events import Event
from ..producer import check_event, publish_checked

__all__ = ["publish_on_commit"]

_PENDING = "webhooks_publish_on_commit"  # the session's events waiting for its commit
_LISTENING = "webhooks_listening"  # the session's listeners are in place

#: An event held by a session, with the transaction (or savepoint) it was added in.
Pending = tuple[SessionTransaction | None, tuple[Event, bytes, str]]


def publish_on_commit(session: Session, event: Any, *, tenant: str) -> None:
    """Publish ``event`` to ``tenant``'s endpoints after ``session`` commits; not at all if
    the transaction rolls back, or the savepoint it was added in does. Raises
    :class:`~webhooks.InvalidInput` at once for a bad event or tenant id."""
    checked = check_event(event, tenant)
    if not session.info.get(_LISTENING):
        # Once per session, and left in place: a listener may not be removed while
        # the event it listens to is being dispatched.
        sqlalchemy_event.listen(session, "after_commit", _published)
        sqlalchemy_event.listen(session, "after_soft_rollback", _dropped)
        session.info[_LISTENING] = True
    within = session.get_nested_transaction() or session.get_transaction()
    pending: list[Pending] = session.info.setdefault(_PENDING, [])
    pending.append((within, checked))


def _published(session: Session) -> None:
    for _, checked in session.info.pop(_PENDING, []):
        publish_checked(*checked)


def _dropped(session: Session, previous_transaction: SessionTransaction) -> None:
    """A rollback, of the whole transaction or of a savepoint: what was added within
    it goes."""
    kept = [
        item
        for item in session.info.get(_PENDING, [])
        if not _inside(item[0], previous_transaction)
    ]
    session.info[_PENDING] = kept


def _inside(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    if transaction is None:  # added before the session began one: the outermost's
        return outer.parent is None
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False
