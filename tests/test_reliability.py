"""What a Redis blip must not break: creation, retried after any error, and traffic
after a Redis restart or stall. Real Redis servers of the tests' own (AOF on), a
real worker, a real receiver, and a TCP proxy that cuts the connection on cue."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import LOOPBACK, as_bytes_list, event
from tests.proxy import Proxy
from webhooks.dev.receiver import Receiver
from webhooks.dev.redis_server import RedisProcess
from webhooks.dev.worker import kill_pool, start_worker, stop_worker
from webhooks.storage import scripts

CREATE_SHA = hashlib.sha1(scripts._source("create_deliveries")[2].encode()).hexdigest().encode()


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisProcess]:
    with RedisProcess(tmp_path) as server:
        yield server


@pytest.fixture
def own_receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def _worker(tmp_path: Path, url: str, name: str, **settings: str):
    env = {
        "WEBHOOKS_REDIS_URL": url,
        "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK,
        **{f"WEBHOOKS_{key.upper()}": value for key, value in settings.items()},
    }
    return start_worker(tmp_path / f"{name}.log", env, "--concurrency=8", "-n", f"{name}@%h")


def _send(url: str, event_file: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    """``webhooks send``, as a producer's script would run it, with a 1 s Redis timeout."""
    return subprocess.run(
        [sys.executable, "-m", "webhooks", "send", url, str(event_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "WEBHOOKS_REDIS_URL": redis_url,
            "WEBHOOKS_REDIS_TIMEOUT_SECONDS": "1",
            "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK,
        },
    )


def _deliveries_of(client: redis.Redis, event_id: str) -> list[str]:
    found = []
    for key in client.scan_iter("webhooks:delivery:*"):
        if not key.endswith(b":attempts") and client.hget(key, "event_id") == event_id.encode():
            found.append(key.decode().rsplit(":", 1)[1])
    return found


def _wait(check, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.parametrize("failure", ["cut after the write", "stall"])
def test_retrying_a_failed_send_makes_one_delivery_and_one_webhook_id(
    failure, own_redis, own_receiver, tmp_path
):
    client = redis.Redis.from_url(own_redis.url)
    client.script_load(scripts._source("create_deliveries")[2])  # no NOSCRIPT round first
    proxy = Proxy(own_redis.port)
    worker = _worker(tmp_path, own_redis.url, "reliability")
    try:
        raw = event()
        event_file = tmp_path / "event.json"
        event_file.write_text(json.dumps(raw))
        url = own_receiver.url("/ok/retried")
        if failure == "stall":
            # Redis stops with the write queued on an open connection; the producer
            # times out (and so do its retries), then Redis runs what was queued.
            proxy.arm(CREATE_SHA, on_command=own_redis.stall)
        else:
            # Redis runs the write; the answer is lost, and so are the retries.
            proxy.arm(CREATE_SHA, cut=True, refuse_for=10)
        failed = _send(url, event_file, proxy.url())
        assert proxy.seen.is_set()
        assert failed.returncode == 1 and failed.stdout == ""
        (line,) = failed.stderr.strip().splitlines()
        assert "retrying the same call is safe" in line, line
        if failure == "stall":
            own_redis.resume()
        else:
            proxy.refuse_for = 0
            proxy._refuse_until = 0
        # The producer does what the message says: the same call again.
        again = _send(url, event_file, proxy.url())
        assert again.returncode == 0, again.stderr
        delivery_id = again.stdout.strip()
        _wait(
            lambda: client.hget(f"webhooks:delivery:{delivery_id}", "status") == b"delivered",
            30,
            "the delivery",
        )
        time.sleep(0.5)
        assert _deliveries_of(client, str(raw["id"])) == [delivery_id]
        assert [r.headers["webhook-id"] for r in own_receiver.received("/ok/retried")] == [
            delivery_id
        ]
    finally:
        own_redis.resume()
        proxy.close()
        stop_worker(worker)


_PRODUCE = """
import json, sys
from webhooks import producer
url, events = json.load(sys.stdin)
print(json.dumps([producer.deliver_one(url, raw) for raw in events]))
"""


def _produce(redis_url: str, url: str, count: int) -> list[str]:
    """Deliveries of ``count`` events to ``url``, made by a producer process of its own
    on ``redis_url`` (this process's settings name another Redis); their ids."""
    produced = subprocess.run(
        [sys.executable, "-c", _PRODUCE],
        capture_output=True,
        text=True,
        timeout=60,
        input=json.dumps([url, [event() for _ in range(count)]]),
        env={**os.environ, "WEBHOOKS_REDIS_URL": redis_url, "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK},
    )
    ids: list[str] = json.loads(produced.stdout)
    return ids


def _resumption(own_redis: RedisProcess, receiver: Receiver, tmp_path: Path, outage) -> None:
    """Deliveries to one busy destination; ``outage`` happens with attempts in flight."""
    worker = _worker(tmp_path, own_redis.url, "resume", retry_base_seconds="0.5", retry_jitter="0")
    try:
        ids = _produce(own_redis.url, receiver.url("/sleep/1"), 24)
        _wait(lambda: receiver.inflight >= 1, 20, "attempts in flight")
        time.sleep(1.2)  # AOF syncs every second: the records are on disk
        assert receiver.inflight >= 1
        outage()
        back = time.time()
        first = _wait(
            lambda: any(r.at > back for r in receiver.received()),
            10,
            "the first POST after Redis came back",
        )
        client = redis.Redis.from_url(own_redis.url)
        _wait(
            lambda: all(
                client.hget(f"webhooks:delivery:{i}", "status") == b"delivered" for i in ids
            ),
            90,
            "every delivery",
        )
        assert worker.poll() is None  # the same worker process, never exited
        per_id = collections.Counter(r.headers["webhook-id"] for r in receiver.received())
        duplicates = sum(n - 1 for n in per_id.values())
        assert set(per_id) == set(ids)
        assert duplicates <= 4, per_id  # one outage x the destination's 4 slots
        # What the worker had fetched is done: nothing left unacknowledged or queued.
        _wait(
            lambda: client.hlen("unacked") == 0 and client.llen("webhooks") == 0,
            15,
            "the unacked messages",
        )
        print(
            f"\nfirst POST {first:.1f} s after Redis answered; {len(ids)} delivered, "
            f"{duplicates} duplicates"
        )
    finally:
        stop_worker(worker)


@pytest.mark.timeout(180)
def test_traffic_resumes_after_a_redis_restart(own_redis, own_receiver, tmp_path):
    def restart() -> None:
        own_redis.kill()  # SIGKILL: the AOF is all that is left
        time.sleep(1)
        own_redis.start()

    _resumption(own_redis, own_receiver, tmp_path, restart)


@pytest.mark.timeout(180)
def test_traffic_resumes_after_a_30_second_stall(own_redis, own_receiver, tmp_path):
    def stall() -> None:
        own_redis.stall()  # SIGSTOP: connections stay open, nothing answers
        time.sleep(30)
        own_redis.resume()

    _resumption(own_redis, own_receiver, tmp_path, stall)


@pytest.mark.timeout(120)
def test_what_the_worker_took_comes_back_when_the_broker_does(own_redis, own_receiver, tmp_path):
    # The messages a worker prefetched live only in it (no ack emulation). Its
    # connection is lost with Redis, so kombu cannot put them back then; the
    # worker keeps them and puts them back once it reconnects, long before the
    # backstop (2 x 120 s) would find their deliveries.
    env = {"WEBHOOKS_REDIS_URL": own_redis.url, "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK}
    worker = start_worker(tmp_path / "taken.log", env, "--concurrency=1", "-n", "taken@%h")
    try:
        ids = _produce(own_redis.url, own_receiver.url("/sleep/1"), 5)
        client = redis.Redis.from_url(own_redis.url)
        _wait(lambda: own_receiver.inflight == 1 and client.llen("webhooks") == 0, 20, "the fetch")
        time.sleep(1.2)  # AOF syncs every second: the records are on disk
        own_redis.kill()
        # Back once the worker has seen it gone: a loaded worker noticed only after a
        # 1 s outage had ended, and kombu then put the messages back itself.
        log = tmp_path / "taken.log"
        _wait(lambda: "the broker cannot be reached" in log.read_text(), 30, "the loss seen")
        own_redis.start()
        _wait(
            lambda: all(
                client.hget(f"webhooks:delivery:{i}", "status") == b"delivered" for i in ids
            ),
            30,
            "every delivery",
        )
    finally:
        stop_worker(worker)
    text = log.read_text()
    assert "messages taken and not acknowledged were put back on the queue" in text
    assert "EMERGENCY DUMP" not in text
    per_id = collections.Counter(r.headers["webhook-id"] for r in own_receiver.received())
    assert set(per_id) == set(ids) and sum(per_id.values()) <= len(ids) + 1, per_id


@pytest.mark.slow
def test_a_worker_warns_when_redis_may_evict(tmp_path):
    with RedisProcess(tmp_path, "--maxmemory-policy", "allkeys-lru") as server:
        worker = _worker(tmp_path, server.url, "evicting")
        stop_worker(worker)
    log = (tmp_path / "evicting.log").read_text()
    assert "Redis maxmemory-policy is allkeys-lru, not noeviction" in log
    assert "Set maxmemory-policy noeviction" in log


def test_a_lost_pool_process_lets_go_of_its_claim_at_once(own_redis, own_receiver, tmp_path):
    # A 20 s lease: without the release, the attempt would wait for it to lapse.
    worker = _worker(tmp_path, own_redis.url, "lost", timeout_seconds="15", recovery_seconds="60")
    try:
        client = redis.Redis.from_url(own_redis.url)
        env = {
            **os.environ,
            "WEBHOOKS_REDIS_URL": own_redis.url,
            "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK,
        }
        event_file = tmp_path / "event.json"
        event_file.write_text(json.dumps(event()))
        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "webhooks",
                "send",
                own_receiver.url("/sleep-once/30"),
                str(event_file),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        delivery_id = sent.stdout.strip()
        _wait(lambda: own_receiver.received("/sleep-once/30", delivery_id), 20, "the attempt")
        # The pool process making the attempt dies, as an OOM kill would do it.
        (member,) = as_bytes_list(client.zrange("webhooks:running", 0, -1))
        killed_at = time.time()
        kill_pool(worker)
        _wait(
            lambda: len(own_receiver.received("/sleep-once/30", delivery_id)) == 2,
            10,
            "the attempt made again",
        )
        again = own_receiver.received("/sleep-once/30", delivery_id)[1].at - killed_at
        assert again < 8, again  # well inside the 20 s lease
        _wait(
            lambda: client.hget(f"webhooks:delivery:{delivery_id}", "status") == b"delivered",
            20,
            "the delivery",
        )
        assert member.decode().startswith(delivery_id)
        assert worker.poll() is None
    finally:
        stop_worker(worker)
