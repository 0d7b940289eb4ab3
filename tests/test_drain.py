"""Pool processes taking runs off the queue themselves (webhooks/worker/drain.py), with
real workers, the suite's Redis and a receiver on loopback: every delivery made once,
retries scheduled, a lost process's claim let go at once, a warm shutdown bounded."""

from __future__ import annotations

import collections
import re
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import (
    NEEDS_RABBITMQ,
    RABBITMQ,
    WORKER_ENV,
    database_url,
    event,
    forget_queue,
    own_database,
    until,
)
from webhooks.broker import messages
from webhooks.broker.app import DELIVER
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import kill_pool, start_worker, stop_worker
from webhooks.models import DeliveryStatus
from webhooks.producer import Producer
from webhooks.settings import Settings
from webhooks.system import System, get_store
from webhooks.worker.task import deliver

pytestmark = pytest.mark.slow


def _env(**values: str) -> dict[str, str]:
    return {**WORKER_ENV, **{f"WEBHOOKS_{k.upper()}": v for k, v in values.items()}}


def _handed_over(log: Path, ids: set[str]) -> int:
    """How many of ``ids`` the worker fetched and handed to a pool process as messages
    (Celery logs each message it receives; a run a pool process took itself is not one)."""
    received = re.findall(rf"Task {re.escape(DELIVER)}\[([^\]]+)\] received", log.read_text())
    return sum(1 for delivery_id in received if delivery_id in ids)


def _publish(receiver, path: str, queue: str, count: int) -> list[str]:
    return [
        deliver.apply_async((receiver.url(path), event()), queue=queue).id for _ in range(count)
    ]


def _all_delivered(ids: list[str]) -> bool:
    store = get_store()
    return all(store.get(i).status is DeliveryStatus.DELIVERED for i in ids)


def _made_once(receiver, path: str, ids: list[str], log: Path, env: dict[str, str], *args: str):
    """Start a worker with ``args``, wait for every one of ``ids``, stop it, and check that
    the receiver got each once."""
    worker = start_worker(log, env, *args)
    try:
        until(lambda: _all_delivered(ids), 60, "the deliveries")
    finally:
        stop_worker(worker)
    per_id = collections.Counter(r.headers["webhook-id"] for r in receiver.received(path))
    assert per_id == {delivery_id: 1 for delivery_id in ids}


def test_pool_processes_take_runs_themselves_and_make_each_once(receiver, tmp_path):
    path = "/ok/taking"  # this test's own
    ids = _publish(receiver, path, "taking", 300)
    log = tmp_path / "taking.log"
    _made_once(receiver, path, ids, log, _env(), "-Q", "taking", "--concurrency=2", "-n", "t@%h")
    handed = _handed_over(log, set(ids))
    # Two processes, 8 messages prefetched, up to 128 more runs each message: most runs
    # never went through the worker's hand-over.
    assert handed < len(ids) / 2, handed
    # And with it turned off, every run is a message the worker handed over.
    path_off = "/ok/not-taking"
    ids_off = _publish(receiver, path_off, "not-taking", 60)
    log_off = tmp_path / "not-taking.log"
    args = ("-Q", "not-taking", "--concurrency=2", "-n", "off@%h")
    _made_once(receiver, path_off, ids_off, log_off, _env(drain_runs="0"), *args)
    assert _handed_over(log_off, set(ids_off)) == len(ids_off)


def test_the_retries_of_runs_taken_are_scheduled_and_their_eta_messages_parked(
    receiver, tmp_path, redis_client
):
    # Retries 0.5 s off stay ETA messages (under the 30 s park threshold). One process
    # holds four messages; the run of the first takes the rest, each failing once, then
    # meets their retries' ETA messages on the queue, which it parks rather than hold.
    path = "/fail/1/taking-retry"
    env = _env(retry_base_seconds="0.5", park_threshold_seconds="30")
    ids = _publish(receiver, path, "taking-retry", 30)
    members = {f"{delivery_id}:0:1" for delivery_id in ids}
    parked: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            scheduled = redis_client.zrange("webhooks:scheduled", 0, -1)
            parked.update(m.decode() for m in scheduled if m.decode() in members)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    worker = start_worker(
        tmp_path / "retry.log", env, "-Q", "taking-retry", "--concurrency=1", "-n", "retry@%h"
    )
    try:
        until(lambda: _all_delivered(ids), 60, "the deliveries")
    finally:
        done.set()
        stop_worker(worker)
    per_id = collections.Counter(r.headers["webhook-id"] for r in receiver.received(path))
    assert per_id == {delivery_id: 2 for delivery_id in ids}  # one failure, one success
    assert parked, "no retry's ETA message was parked by a pool process"


def test_a_lost_pool_process_lets_go_of_the_run_it_took_itself(receiver, tmp_path, redis_client):
    # A 20 s lease (15 s attempt deadline + 5): without the release, the run would wait
    # for it to lapse. The worker holds the first four messages; the run of the first
    # takes the others off the queue, the slow one last.
    env = _env(timeout_seconds="15", recovery_seconds="60")
    fast = _publish(receiver, "/ok/taking-lost", "taking-lost", 8)
    (slow,) = _publish(receiver, "/sleep-once/30/taking-lost", "taking-lost", 1)
    log = tmp_path / "lost.log"
    worker = start_worker(log, env, "-Q", "taking-lost", "--concurrency=1", "-n", "lost@%h")
    children: list[int] = []
    try:
        until(lambda: receiver.received("/sleep-once/30/taking-lost", slow), 20, "the attempt")
        assert _handed_over(log, {slow}) == 0, "the slow run came as a message"
        killed_at = time.time()
        children = kill_pool(worker)
        until(
            lambda: len(receiver.received("/sleep-once/30/taking-lost", slow)) == 2,
            10,
            "the attempt made again",
        )
        again = receiver.received("/sleep-once/30/taking-lost", slow)[1].at - killed_at
        assert again < 8, again  # well inside the 20 s lease
        until(lambda: _all_delivered([*fast, slow]), 30, "the deliveries")
    finally:
        stop_worker(worker)
    # The worker read the lost process's note, and removed it.
    assert not any(Path(f"/dev/shm/webhooks-taken-{pid}").exists() for pid in children)


def test_a_warm_shutdown_waits_for_the_run_in_flight_and_little_more(receiver, tmp_path):
    path = "/sleep/0.2/taking-stop"
    ids = _publish(receiver, path, "taking-stop", 40)
    worker = start_worker(
        tmp_path / "stop.log",
        _env(drain_seconds="1"),
        "-Q",
        "taking-stop",
        "--concurrency=1",
        "-n",
        "stop@%h",
    )
    until(lambda: receiver.received(path), 20, "the first attempt")
    asked = time.monotonic()
    stop_worker(worker)
    # The run in flight (0.2 s), then at most WEBHOOKS_DRAIN_SECONDS of runs taken, then
    # Celery's own shutdown; 5 s more for a loaded machine.
    took = time.monotonic() - asked
    assert took < 1 + 0.2 + 5, took
    made = {r.headers["webhook-id"] for r in receiver.received(path)}
    assert made < set(ids), "the worker made them all before it stopped"
    # What was not made is still queued, or handed back: a second worker makes it, once.
    args = ("-Q", "taking-stop", "--concurrency=4", "-n", "stop2@%h")
    _made_once(receiver, path, ids, tmp_path / "stop2.log", _env(), *args)


@NEEDS_RABBITMQ
def test_on_rabbitmq_pool_processes_take_runs_too_and_make_each_once(tmp_path):
    # RabbitMQ keeps what it hands out until it is acknowledged: a run taken with
    # basic.get is acknowledged once it is over, and handed back should it fail.
    prefix = "taking-rabbit"  # the queue's name on RabbitMQ, and the store's keys
    forget_queue(prefix)
    with own_database(6), Receiver() as receiver:
        url = database_url(6)
        system = System(Settings(redis_url=url, broker_url=RABBITMQ, key_prefix=prefix))
        path = "/fail/1/taking-rabbit"  # every delivery fails once, then is delivered
        ids = Producer(system).deliver_many([(receiver.url(path), event()) for _ in range(200)])
        # Admission at publish, on RabbitMQ too: the destination's limit (4) went out,
        # the rest wait at it, and each attempt that frees a slot hands it on.
        assert messages.waiting(system.app) == 4
        env = _env(redis_url=url, broker_url=RABBITMQ, key_prefix=prefix)
        log = tmp_path / "rabbit.log"
        worker = start_worker(log, env, "--concurrency=2", "-n", "taking-rabbit@%h")
        try:
            until(
                lambda: all(
                    system.deliveries.get(i).status is DeliveryStatus.DELIVERED for i in ids
                ),
                90,
                "the deliveries",
            )
        finally:
            stop_worker(worker)
        per_id = collections.Counter(r.headers["webhook-id"] for r in receiver.received(path))
        assert per_id == {delivery_id: 2 for delivery_id in ids}
        # First attempts and retries both: 400 runs, most of them taken by the pool.
        handed = _handed_over(log, set(ids))
        assert handed < len(ids), handed
        # Each message taken acknowledged: unacknowledged, it would be back on the queue
        # now that the worker is gone, hundreds of them. A few may be: duplicates the
        # promoter sent for claims that lapsed on a loaded machine, dropped when run.
        taken = 2 * len(ids) - handed
        assert messages.waiting(system.app) < taken / 4, taken
        system.close()


def _resent(log: Path, ids: set[str]) -> int:
    """How many of ``ids`` came to the worker as a message more than once."""
    received = re.findall(rf"Task {re.escape(DELIVER)}\[([^\]]+)\] received", log.read_text())
    return sum(1 for d, n in collections.Counter(received).items() if n > 1 and d in ids)


def test_a_freed_slot_goes_to_the_run_waiting_for_it_in_the_same_process(receiver, tmp_path):
    # A destination limited to 2 attempts in flight, 4 processes: runs meet it busy and
    # wait for a slot. Without the handoff, each comes back through the schedule, the
    # promoter and a second message; with it, the process whose attempt freed the slot
    # runs it next.
    def run(name: str, **settings: str) -> tuple[int, int]:
        path = f"/sleep/0.05/{name}"
        ids = _publish(receiver, path, name, 60)
        log = tmp_path / f"{name}.log"
        env = _env(destination_concurrency="2", **settings)
        _made_once(receiver, path, ids, log, env, "-Q", name, "--concurrency=4", "-n", f"{name}@%h")
        # The runs of messages that met the destination busy (Celery logs what each
        # task returned); a run a process took itself logs nothing of the kind.
        waited = len(re.findall(r"succeeded in [0-9.]+s: 'waiting'", log.read_text()))
        return waited, _resent(log, set(ids))

    waited_before, resent_before = run("handoff-off", drain_runs="0")
    assert waited_before and resent_before >= waited_before / 2, (waited_before, resent_before)
    waited, resent = run("handoff-on")
    print(
        f"\nbusy destination, 60 deliveries: without the handoff {waited_before} runs met it "
        f"busy and {resent_before} came back as a second message; with it {waited} and {resent}"
    )
    # Only what a process was handed as its drain ended goes through the schedule.
    assert resent <= max(2, waited_before // 5), (resent, waited_before)
