"""The Celery and kombu names this package relies on beyond their documented API.

pyproject.toml pins the minor versions these were tested with. A worker checks
at start that every one of them is still there (:func:`missing`), so that an
upgrade that drops one fails at once with its name, not later inside a delivery.
"""

from __future__ import annotations

import importlib

__all__ = ["RELIED_ON", "missing"]

#: (module, attribute path, what relies on it)
RELIED_ON: tuple[tuple[str, str, str], ...] = (
    (
        "kombu.transport.redis",
        "Channel._create_client",
        "broker/transport.py overrides it to keep one client per pool",
    ),
    (
        "kombu.transport.redis",
        "Channel._connparams",
        "broker/transport.py keeps its result for use after the connection closed",
    ),
    (
        "kombu.transport.redis",
        "Channel._delete",
        "broker/transport.py lets a closing channel skip it when Redis is gone",
    ),
    ("kombu.transport.redis", "Channel._closing", "broker/transport.py reads it in _delete"),
    (
        "kombu.transport.redis",
        "Channel.conn_or_acquire",
        "broker/messages.py pushes a batch through it",
    ),
    ("kombu.transport.redis", "Channel.pool", "broker/transport.py compares pools"),
    (
        "kombu.transport.redis",
        "Channel.ack_emulation",
        "broker/config.py turns it off; broker/transport.py reads it",
    ),
    (
        "kombu.transport.redis",
        "Channel._restore",
        "broker/transport.py hands back with it what a lost connection left unrestored",
    ),
    (
        "kombu.transport.virtual",
        "QoS.restore_unacked",
        "broker/transport.py keeps what it returns as unrestored",
    ),
    (
        "kombu.transport.redis",
        "SentinelChannel._sentinel_managed_pool",
        "broker/transport.py keeps the sentinels for use after the connection closed",
    ),
    (
        "amqp.channel",
        "Channel._basic_publish",
        "broker/rabbitmq.py sends a batch with it and counts delivery tags in it",
    ),
    (
        "amqp.channel",
        "Channel._on_basic_ack",
        "broker/rabbitmq.py overrides it to take confirmed tags off a batch",
    ),
    (
        "amqp.channel",
        "Channel._on_basic_nack",
        "broker/rabbitmq.py overrides it to count a batch's refused messages",
    ),
    (
        "amqp.transport",
        "_AbstractTransport.write",
        "broker/rabbitmq.py writes a loop pass's acknowledgements with it, in one write",
    ),
    (
        "amqp.connection",
        "Connection.bytes_sent",
        "broker/rabbitmq.py counts its acknowledgements' write in it, as py-amqp does",
    ),
    ("amqp.serialization", "dumps", "broker/rabbitmq.py encodes basic.ack's arguments with it"),
    (
        "kombu.transport.pyamqp",
        "Transport.implements",
        "broker/rabbitmq.py extends it with batch_publish",
    ),
    ("celery.app.amqp", "AMQP.as_task_v2", "broker/messages.py builds message headers with it"),
    ("celery.app.amqp", "AMQP.router", "broker/messages.py routes a batch with it"),
    ("celery.app.base", "Celery.thread_oid", "broker/messages.py sets reply_to from it"),
    (
        "celery.apps.worker",
        "safe_say",
        "logs.py replaces it in JSON mode: Celery prints its shutdown notices with it",
    ),
)


def missing() -> list[str]:
    """Every relied-on name that the installed Celery and kombu lack, as ``module.path``."""
    absent = []
    for module_name, path, _ in RELIED_ON:
        try:
            found: object = importlib.import_module(module_name)
        except ImportError:
            absent.append(f"{module_name}.{path}")
            continue
        for part in path.split("."):
            if not hasattr(found, part):
                absent.append(f"{module_name}.{path}")
                break
            found = getattr(found, part)
    return absent
