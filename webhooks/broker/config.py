"""The Celery configuration of the webhook workers and producers, with the reasons.

:func:`celery_config` derives it from a deployment's settings, and each
:class:`~webhooks.system.System` builds its Celery app from it. A deployment that
wants to change a Celery setting names its own module in ``CELERY_CONFIG_MODULE``,
holding only what it changes (the repository's ``celeryconfig.py`` shows how); its
values win over these.

A module written for an earlier version, which starts with
``from webhooks.broker.config import *``, still works: every name below is there,
computed from the ``WEBHOOKS_*`` environment when that import runs.
"""

from __future__ import annotations

import math
from typing import Any

from ..settings import SentinelURL, Settings

# Four messages reserved per process keep the pool busy between broker round
# trips (measured: 300 -> 394 deliveries/s end to end with 8 processes); the
# prefork pool hands each to whichever process is free, so a slow attempt does
# not hold the others back.
PREFETCH = 4


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting of a deployment, each with the reason it has its value.

    The same names whatever the settings: what does not apply has Celery's own
    default, so that a configuration module can take them all.
    """
    # The store's Redis, unless WEBHOOKS_BROKER_URL names another broker (RabbitMQ).
    broker_url = settings.broker
    options: dict[str, Any] = {}
    # kombu's Redis transport with one fix for speed (transport.py), and its Sentinel
    # transport with the same fix for a sentinel:// URL, which kombu reads as one URL
    # per sentinel with the primary's name and the sentinels' password as transport
    # options. On RabbitMQ, kombu's py-amqp transport with a batch's publisher
    # confirms awaited together (rabbitmq.py). Other schemes (rediss://, unix://)
    # keep kombu's own transport.
    transport = None
    scheme = broker_url.partition("://")[0]
    if scheme in ("amqp", "pyamqp"):
        transport = "webhooks.broker.rabbitmq:Transport"
    elif scheme == "amqps":
        transport = "webhooks.broker.rabbitmq:SSLTransport"
    elif broker_url.startswith("redis://"):
        transport = "webhooks.broker.transport:Transport"
    elif broker_url.startswith("sentinel://"):
        sentinel = SentinelURL.parse(broker_url)
        broker_url = sentinel.kombu_url()
        transport = "webhooks.broker.transport:SentinelTransport"
        options["master_name"] = sentinel.master
        options["sentinel_kwargs"] = {
            "password": sentinel.sentinel_password,
            "socket_timeout": settings.redis_timeout_seconds,
            "socket_connect_timeout": settings.redis_timeout_seconds,
        }
    # No acknowledgements emulated on Redis: kombu's emulation records every message
    # it hands out in an unacked hash and index, and deletes it at the ack, two
    # MULTI round trips per message on top of the fetch (half of the worker main
    # process's time, measured with py-spy; bench/engines.py measures the
    # difference). What it guarded, a message fetched by a worker that died, is
    # guarded here already: an attempt begins with its claim, which comes back
    # through the promoter when its lease lapses, and a delivery with nothing
    # scheduled, claimed or running is found by the backstop (worker/promoter.py):
    # what a SIGKILLed worker had prefetched runs 2 x WEBHOOKS_RECOVERY_SECONDS
    # after it was due (with the emulation, after the visibility timeout).
    # On a warm shutdown, and when the broker connection is lost, kombu hands back
    # to the queue every message the worker took and did not acknowledge: those
    # prefetched and the short retries' ETA messages; when Redis is gone at that
    # moment, the transport here keeps them and hands them back once it reconnects
    # (transport.py). So only with this project's transports: rediss:// and unix://
    # keep kombu's emulation. A deployment can turn it back on with
    # "ack_emulation": True in its broker_transport_options; the settings below are
    # then in force again.
    if scheme in ("redis", "sentinel"):
        options["ack_emulation"] = False
    # With ack emulation, Redis hands out again any message left unacknowledged for
    # longer than the visibility timeout, countdown or not: measured here, a 5 s
    # timeout and a 20 s countdown ran every task 4 times. So no message may stay
    # unacknowledged that long. Retries waiting longer than
    # WEBHOOKS_PARK_THRESHOLD_SECONDS are parked in Redis instead of held as ETA
    # messages (webhooks/storage/schedule.py), which bounds what a worker holds: an
    # ETA message of at most the threshold, prefetched messages waiting behind
    # running attempts, and the attempt itself (each at most
    # WEBHOOKS_TIMEOUT_SECONDS). The timeout is the threshold plus (PREFETCH + 1)
    # attempt timeouts plus 30 s: 135 s with the defaults. It is also how long
    # messages prefetched by a worker that died wait to come back; an attempt that
    # had started comes back sooner, through its lapsed claim
    # (WEBHOOKS_RECOVERY_SECONDS). Should a message still come back early, the
    # attempt claim makes the duplicate a no-op instead of a second POST. Kept for
    # a deployment that turns the emulation back on, and for rediss:// and unix://.
    options["visibility_timeout"] = math.ceil(
        settings.visibility_timeout_seconds
        or settings.park_threshold_seconds + (PREFETCH + 1) * settings.timeout_seconds + 30
    )
    # kombu looks for messages past the visibility timeout every interval x
    # throttle seconds (100 s by its defaults): every 2 s here, so that what a
    # worker had fetched when it or its connection died is back soon after the
    # timeout. One ZRANGE of the unacked index per sweep.
    options["unacked_restore_interval"] = 2
    options["unacked_restore_throttle"] = 1
    # On Redis, kombu's own keys (the queue's list, unacked messages, bindings) start
    # with the prefix too, unless it is the default: a deployment that upgrades keeps
    # the keys it has.
    if settings.key_prefix != "webhooks":
        options["global_keyprefix"] = f"{settings.key_prefix}:"
    # On RabbitMQ, every queue is a quorum queue: replicated over the cluster's nodes
    # (Raft), and with publisher confirms a published message is on a majority of
    # them before the producer goes on. Quorum queues also give Celery's native
    # delayed delivery, which needs topic exchanges: a retry then waits in
    # RabbitMQ's delay queues instead of unacknowledged in a worker, so on RabbitMQ
    # every backoff wait goes there, however long (retry.py), and the schedule in
    # Redis keeps what it is still needed for: circuits, destination slots, and a
    # retry the broker refused. Queues declared otherwise by an earlier version must
    # be deleted first (RabbitMQ refuses to change a queue's type).
    # A broker that stops answering would hold a publish waiting for its confirms for
    # ever: the wait ends after WEBHOOKS_BROKER_CONFIRM_TIMEOUT_SECONDS (rabbitmq.py).
    quorum = settings.native_delays
    if quorum:
        options["confirm_publish"] = True
        options["confirm_timeout"] = settings.broker_confirm_timeout_seconds
    return {
        "broker_url": broker_url,
        "broker_transport": transport,
        "broker_transport_options": options,
        "broker_connection_retry_on_startup": True,
        # JSON only: a pickle payload from anyone who can write to Redis would run
        # code in the worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # Nothing reads task results: the delivery store in Redis is the record.
        "task_ignore_result": True,
        "result_backend": None,
        # Ack after the attempt, and requeue when the process running it dies, so a
        # crash mid-attempt repeats the attempt instead of losing the delivery.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": PREFETCH,
        "worker_disable_rate_limits": True,
        # When the broker connection drops, attempts in flight finish and are recorded
        # (the store reconnects on its own) instead of being killed: a killed attempt
        # would hold its claim and destination slot until the lease lapsed, stalling
        # that destination. Its message, should it come back, finds the attempt on
        # record (or running) and is dropped: the claim, not cancelling, keeps one
        # copy in flight. Celery 6 turns cancelling on by default; it stays off here.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # The queue is named by WEBHOOKS_KEY_PREFIX ("webhooks"), so that deployments
        # with different prefixes on one broker never take each other's messages.
        "task_default_queue": settings.key_prefix,
        "task_default_queue_type": "quorum" if quorum else "classic",
        "task_create_missing_queue_type": "quorum" if quorum else "classic",
        "task_default_exchange_type": "topic" if quorum else "direct",
        "task_create_missing_queue_exchange_type": "topic" if quorum else None,
        "enable_utc": True,
        "timezone": "UTC",
        # Task events cost a Redis publish per task state change. Flower turns them on
        # in the workers when it starts (its --enable-events default), so they are off
        # unless someone is watching.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        # On a warm shutdown (SIGTERM), the Redis transport puts every unacknowledged
        # message, waiting retries included, back on the queue. The soft shutdown lets
        # an attempt in flight finish first, and also runs when the worker is idle,
        # which is the case that matters for a worker holding only waiting retries.
        "worker_soft_shutdown_timeout": 10.0,
        "worker_enable_soft_shutdown_on_idle": True,
    }


#: Every name :func:`celery_config` gives (the defaults' names are everyone's).
_NAMES = tuple(celery_config(Settings.model_construct()))

__all__ = ["PREFETCH", "celery_config", *_NAMES]


def __getattr__(name: str) -> Any:
    # The names of earlier versions' module-level configuration, from the environment.
    if name in _NAMES:
        return celery_config(Settings())[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
