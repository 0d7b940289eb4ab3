"""Celery configuration for the webhook workers. Values derive from WEBHOOKS_* settings."""

from __future__ import annotations

import math

from webhooks.retry import BackoffPolicy
from webhooks.settings import get_settings

_settings = get_settings()
_policy = BackoffPolicy.from_settings(_settings)

broker_url = _settings.redis_url
broker_connection_retry_on_startup = True

# JSON only: a pickle payload from anyone who can write to Redis would run code in the worker.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

# Nothing reads task results: the delivery store in Redis is the record.
task_ignore_result = True
result_backend = None

# Ack after the attempt, and requeue when the process running it dies, so a
# crash mid-attempt repeats the attempt instead of losing the delivery.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# With acks_late, a task still running when the broker connection drops would
# be redelivered while it runs; cancelling it keeps one copy in flight.
worker_cancel_long_running_tasks_on_connection_loss = True

task_default_queue = "webhooks"
enable_utc = True
timezone = "UTC"

# Flower draws its dashboards from task events.
worker_send_task_events = True
task_send_sent_event = True

# A retry with a countdown is a message the worker holds unacknowledged until
# it is due. Redis hands any message unacknowledged for longer than the
# visibility timeout to another worker, countdown or not, so a countdown longer
# than the timeout makes the endpoint receive the same attempt again and again.
# Measured here: with a 5 s visibility timeout and a 20 s countdown, every task
# ran 4 times. So the timeout is the longest countdown the retry policy can ask
# for (the 14th wait, jitter included) plus the attempt's own deadline and an
# hour of margin: 51,105 s (14 h 12 min) with the default settings.
broker_transport_options = {
    "visibility_timeout": math.ceil(
        _policy.longest_wait() + _settings.timeout_seconds + 3600
    ),
}

# On a warm shutdown (SIGTERM), the Redis transport puts every unacknowledged
# message, waiting retries included, back on the queue. The soft shutdown lets
# an attempt in flight finish first, and also runs when the worker is idle,
# which is the case that matters for a worker holding only waiting retries.
worker_soft_shutdown_timeout = 10.0
worker_enable_soft_shutdown_on_idle = True
