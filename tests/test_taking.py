"""What a pool process that takes runs itself (webhooks/worker/drain.py) asks of Redis,
against the suite's Redis: the next run claimed in the round trip of the record before
it, and messages taken a fair share at a time and given back in order."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis

from tests.conftest import REDIS_URL
from webhooks.broker import messages
from webhooks.clock import lease_end, now
from webhooks.dev.redis_server import RedisProcess
from webhooks.models import Attempt, Delivery, DeliveryStatus, Run
from webhooks.producer import Producer
from webhooks.settings import Settings
from webhooks.storage import scripts
from webhooks.storage.deliveries import ClaimOutcome, NextRun
from webhooks.system import System


class _Counting(redis.Connection):
    """A connection that counts what it writes to Redis: one write per call, one per
    pipeline."""

    writes = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).writes += 1
        super().send_packed_command(command, check_health)


@pytest.fixture
def system(redis_client):
    pool = redis.ConnectionPool.from_url(REDIS_URL, connection_class=_Counting)
    client = redis.Redis(connection_pool=pool)
    system = System(client=client)
    yield system
    client.close()


def _created(system: System, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for delivery_id in ids:
        moment = now()
        delivery = Delivery(
            id=delivery_id,
            url="http://127.0.0.1:9/taking",
            event_id=f"evt-{delivery_id}",
            event_type="t",
            status=DeliveryStatus.PENDING,
            created_at=moment,
            updated_at=moment,
            next_attempt_at=moment,
        )
        system.deliveries.create(delivery, b"{}")
    return ids


def _delivered(number: int) -> Attempt:
    return Attempt(
        number=number,
        started_at=now(),
        duration_ms=1.0,
        status_code=200,
        error=None,
        response_body="ok",
    )


def _running(redis_client: redis.Redis, run: Run) -> bool:
    return redis_client.zscore("webhooks:running", run.member) is not None


def _made_then(system, made: Run, then: NextRun, **more):
    """Claim and record ``made`` (delivered), claiming ``then`` with the record."""
    claim = system.deliveries.claim_attempt(made, 30)
    return system.deliveries.record_attempt(
        made,
        _delivered(1),
        DeliveryStatus.DELIVERED,
        destination=claim.destination,
        then_claim=then,
        **more,
    )


def test_the_record_claims_the_run_made_next_in_the_same_round_trip(system, redis_client):
    warm, first, second = (Run(i) for i in _created(system, 3))
    store = system.deliveries
    # The scripts loaded (a Redis that has never run them answers NOSCRIPT, and each is
    # then called again directly: the test below).
    claim = store.claim_attempt(warm, 30)
    args = {"destination": claim.destination}
    store.record_attempt(warm, _delivered(1), DeliveryStatus.DELIVERED, **args)
    claim = store.claim_attempt(first, 30)
    _Counting.writes = 0
    recorded = store.record_attempt(
        first, _delivered(1), DeliveryStatus.DELIVERED, **args, then_claim=NextRun(second, 30)
    )
    assert _Counting.writes == 1
    assert recorded.claim is not None and recorded.claim.outcome is ClaimOutcome.CLAIMED
    assert recorded.claim.url == "http://127.0.0.1:9/taking"
    assert store.get(first.delivery_id).status is DeliveryStatus.DELIVERED
    assert not _running(redis_client, first) and _running(redis_client, second)
    # Claimed once: the run it was made for finds it its own to make, no one else.
    assert store.claim_attempt(second, 30).outcome is ClaimOutcome.BUSY


def test_a_handed_run_leaves_the_schedule_as_it_is_claimed(system, redis_client):
    first, handed = (Run(i) for i in _created(system, 2))
    redis_client.zadd("webhooks:scheduled", {handed.member: now().timestamp() + 2})
    recorded = _made_then(system, first, NextRun(handed, 30, handed=True))
    assert recorded.claim is not None and recorded.claim.outcome is ClaimOutcome.CLAIMED
    assert redis_client.zscore("webhooks:scheduled", handed.member) is None


def test_the_record_and_the_claim_load_their_scripts_again_after_a_flush(system, redis_client):
    # A Redis that restarted or failed over has no script: the record's call by hash
    # fails, and it is made again, loading it (the next run's claim with it).
    first, second = (Run(i) for i in _created(system, 2))
    store = system.deliveries
    redis_client.script_flush()
    recorded = _made_then(system, first, NextRun(second, 30))
    assert store.get(first.delivery_id).status is DeliveryStatus.DELIVERED
    assert recorded.claim is not None and recorded.claim.outcome is ClaimOutcome.CLAIMED
    assert _running(redis_client, second)


def test_the_next_run_of_a_record_already_made_is_claimed_apart(system, redis_client):
    # A record made twice (its first reply lost) is a no-op; the run after it is still
    # claimed with it, once.
    first, second = (Run(i) for i in _created(system, 2))
    store = system.deliveries
    claim = store.claim_attempt(first, 30)
    args = {"destination": claim.destination}
    store.record_attempt(first, _delivered(1), DeliveryStatus.DELIVERED, **args)
    again = store.record_attempt(
        first, _delivered(1), DeliveryStatus.DELIVERED, then_claim=NextRun(second, 30), **args
    )
    assert again.claim is not None and again.claim.outcome is ClaimOutcome.CLAIMED
    assert len(store.get(first.delivery_id).attempts) == 1


def test_the_next_run_is_claimed_when_the_recorded_delivery_is_gone(system, redis_client):
    # Deleted while its attempt was in flight: nothing of it is written back, and the
    # run after it is claimed all the same.
    first, second = (Run(i) for i in _created(system, 2))
    store = system.deliveries
    claim = store.claim_attempt(first, 30)
    store.delete_many([first.delivery_id])
    recorded = store.record_attempt(
        first,
        _delivered(1),
        DeliveryStatus.DELIVERED,
        destination=claim.destination,
        then_claim=NextRun(second, 30),
    )
    assert recorded.claim is not None and recorded.claim.outcome is ClaimOutcome.CLAIMED
    assert not redis_client.exists(f"webhooks:delivery:{first.delivery_id}")
    assert not _running(redis_client, first) and _running(redis_client, second)


@pytest.mark.parametrize(("queued", "taken"), [(3, 1), (12, 2), (100, 8)])
def test_a_pool_process_takes_its_share_and_gives_back_the_rest_in_order(
    system, redis_client, queued, taken
):
    queue = f"taking-share-{queued}"
    redis_client.delete(queue)
    runs = [Run(str(uuid.uuid4())) for _ in range(queued)]
    Producer(system).enqueue(runs, queue)
    assert redis_client.llen(queue) == queued
    with messages.taking(system.app, queue) as take:
        first = take()
        assert first is not None and first.run == runs[0]
        assert redis_client.llen(queue) == queued - 1  # one, the first time
        second = take()
        assert second is not None and second.run == runs[1]
        # Then its share of what waited after (a quarter, at most 8): the rest stay
        # for the others.
        assert redis_client.llen(queue) == queued - 1 - taken
    # What it held and did not hand out is back, in order: the next fetched is the next.
    assert redis_client.llen(queue) == queued - 2
    with messages.taking(system.app, queue) as take:
        following = [take() for _ in range(queued - 2)]
        assert take() is None
    assert [t.run for t in following if t is not None] == runs[2:]


def test_a_message_handed_back_is_the_next_fetched(system, redis_client):
    queue = "taking-back"
    redis_client.delete(queue)
    runs = [Run(str(uuid.uuid4())) for _ in range(2)]
    Producer(system).enqueue(runs, queue)
    with messages.taking(system.app, queue) as take:
        first = take()
        assert first is not None
        first.settle(True)  # its run raised, or it was lined up and not made
    with messages.taking(system.app, queue) as take:
        again = [take(), take()]
    assert [t.run for t in again if t is not None] == runs


def _hand_over(system, redis_client, made: Run, destination: str, waiting: Run, **more):
    """Record ``made`` with ``waiting`` waiting at its destination, with the handoff on."""
    redis_client.zadd(f"webhooks:destination:{destination}:waiting", {waiting.member: 1})
    return system.deliveries.record_attempt(
        made,
        _delivered(1),
        DeliveryStatus.DELIVERED,
        destination=destination,
        handoff=("celery", "celery"),
        **more,
    )


def test_the_record_claims_the_run_it_hands_over_when_none_is_lined_up(system, redis_client):
    # The run waiting at the destination for the slot the attempt frees goes to the
    # caller claimed, out of the schedule: should the reply be lost, its claim lapses
    # and the promoter runs it, as for any claim.
    first, waiting, then = (Run(i) for i in _created(system, 3))
    claim = system.deliveries.claim_attempt(first, 30)
    assert claim.destination
    recorded = _hand_over(system, redis_client, first, claim.destination, waiting, claim_handed=30)
    assert recorded.handed == waiting
    assert recorded.handed_claim is not None
    assert recorded.handed_claim.outcome is ClaimOutcome.CLAIMED
    assert recorded.handed_claim.url == "http://127.0.0.1:9/taking"
    assert redis_client.zscore("webhooks:scheduled", waiting.member) is None
    assert _running(redis_client, waiting)
    # Without claim_handed, it waits in the schedule a moment for the caller instead
    # (the caller makes the run it was handed, and the next waits).
    recorded = _hand_over(system, redis_client, waiting, claim.destination, then)
    assert (recorded.handed, recorded.handed_claim) == (then, None)
    assert redis_client.zscore("webhooks:scheduled", then.member) is not None
    assert not _running(redis_client, then)


@pytest.mark.parametrize(
    "value", ["webhooks:destination:%s:inflight", "", 2592000, 0.05, 'a "quoted" \\ \n line é']
)
def test_a_scripts_constant_reaches_lua_as_redis_would_have_passed_it(redis_client, value):
    # Constants are written into a script's source (webhooks/storage/scripts.py): Lua
    # reads each as the string the argument would have been.
    literal = scripts._literal(scripts._encoded(value))
    passed = redis_client.eval("return ARGV[1]", 0, value)
    assert redis_client.eval(f"return {literal}", 0) == passed


@pytest.mark.slow  # a Redis server of its own
def test_messages_taken_when_redis_goes_away_are_left_to_the_backstop(tmp_path, caplog):
    # The process holds messages it took and has not started; Redis is gone when it
    # stops taking: it cannot push them back, says so, and does not fail its task.
    with RedisProcess(tmp_path) as server:
        system = System(Settings(redis_url=server.url))
        Producer(system).enqueue([Run(str(uuid.uuid4())) for _ in range(40)], "taking-gone")
        with messages.taking(system.app, "taking-gone") as take:
            assert take() is not None  # one, the first time
            assert take() is not None  # and 7 more held
            server.kill()
        system.close()
    assert "could not give back messages taken" in caplog.text


def test_a_script_called_directly_is_loaded_again_after_a_flush(system, redis_client):
    (run,) = (Run(i) for i in _created(system, 1))
    redis_client.script_flush()  # as a Redis that restarted or failed over
    assert system.deliveries.claim_attempt(run, 30).outcome is ClaimOutcome.CLAIMED
    assert _running(redis_client, run)


def test_a_script_call_names_what_its_header_lacks_or_misses(redis_client):
    script = scripts.Script(redis_client, "abandon_attempt")
    keys = dict.fromkeys(script.key_names, "k")
    args = {name.lstrip("*"): "" for name in script.arg_names}
    first, *_ = args
    with pytest.raises(TypeError, match=rf"ARGV: missing \['{first}'\], unexpected \['extra'\]"):
        script(keys, {**{k: v for k, v in args.items() if k != first}, "extra": 1})
    with pytest.raises(TypeError, match=r"KEYS: missing \[\], unexpected \['extra'\]"):
        script({**keys, "extra": "k"}, args)


@pytest.mark.parametrize(
    "value", ["webhooks:delivery:x", "", 3, -7, 2592000, 0.05, 1733543000.123456, b"\x00\xff", "é"]
)
def test_a_script_call_passes_each_value_as_redis_py_would(redis_client, value):
    # Script calls are packed by hiredis in one call (scripts._send), not by redis-py.
    sent = scripts._send(redis_client, ("EVAL", "return ARGV[1]", 0, value))
    assert sent == redis_client.eval("return ARGV[1]", 0, value)


def test_an_error_a_script_answers_leaves_its_connection_pooled(redis_client):
    client = redis.Redis.from_url(REDIS_URL)
    before = client.client_id()
    with pytest.raises(redis.ResponseError, match="not this"):
        scripts._send(client, ("EVAL", "return redis.error_reply('not this')", 0))
    # The same connection, in step: the error was its whole answer.
    assert client.client_id() == before
    assert scripts._send(client, ("EVAL", "return 7", 0)) == 7
    client.close()


@pytest.mark.slow  # a Redis server of its own, paused
def test_a_script_call_that_times_out_is_dropped_and_made_again(tmp_path):
    # What redis-py's own path does: the connection that timed out is dropped (it may
    # still hold the late answer), and the call is made again as the client's retry
    # policy says.
    with RedisProcess(tmp_path) as server:
        retry = redis.retry.Retry(redis.backoff.ConstantBackoff(0.05), 4)
        client = redis.Redis.from_url(server.url, socket_timeout=0.25, retry=retry)
        first = client.client_id()
        pauser = redis.Redis.from_url(server.url)
        pauser.client_pause(600, all=True)
        started = time.monotonic()
        assert scripts._send(client, ("EVAL", "return 'made'", 0)) == b"made"
        assert time.monotonic() - started > 0.25
        assert client.client_id() != first
        client.close()
        pauser.close()


def test_a_lease_is_cut_to_a_whole_second_only_while_it_keeps_its_least():
    assert lease_end(1000.3, 20, 16) == 1020  # still 19.7 s, past the 16 it must keep
    assert lease_end(1000.3, 4, 4) == 1004.3  # 3.7 s would cut into the attempt's own
    assert lease_end(1000.0, 4, 4) == 1004
    assert lease_end(1000.9, 4.5, 3.6) == 1005  # 4.1 s


def test_a_claim_and_its_slot_hold_to_a_whole_second_within_the_lease(system, redis_client):
    # Integer scores keep the small sorted sets of claims cheap for Redis (clock.lease_end).
    (run,) = (Run(i) for i in _created(system, 1))
    # Its destination as new: the earlier tests' runs hold none of its slots.
    redis_client.delete(*redis_client.keys("webhooks:destination:127.0.0.1:9:*"))
    before = time.time()
    claim = system.deliveries.claim_attempt(run, 30)
    after = time.time()
    assert claim.outcome is ClaimOutcome.CLAIMED and claim.destination
    for key in ("webhooks:running", f"webhooks:destination:{claim.destination}:inflight"):
        score = redis_client.zscore(key, run.member)
        assert score is not None and score == int(score)
        assert before + 29 < score <= after + 30


def test_a_key_given_as_a_constant_is_in_the_source_not_in_the_call(redis_client):
    script = scripts.Script(redis_client, "abandon_attempt", {"running_key": "k:running"})
    assert "running_key" not in script.key_names
    assert (
        'local running_key = "k:running"'
        in scripts._source("abandon_attempt", {"running_key": "k:running"})[2]
    )
    keys = dict.fromkeys(script.key_names, "k")
    args = {name.lstrip("*"): "" for name in script.arg_names}
    with pytest.raises(TypeError, match=r"KEYS: missing \[\], unexpected \['running_key'\]"):
        script({**keys, "running_key": "k:running"}, args)
    with pytest.raises(TypeError, match=r"abandon_attempt.lua: no constant \['nothing'\]"):
        scripts.Script(redis_client, "abandon_attempt", {"nothing": 1})


def test_a_number_constant_is_a_lua_number_and_a_template_has_its_parts(redis_client):
    source = scripts._source(
        "abandon_attempt",
        {"now": scripts.Number(2.5), "inflight_template": "p:%%:%s:inflight"},
    )[2]
    assert "local now = 2.5\n" in source
    assert 'local inflight_template_head, inflight_template_tail = "p:%:", ":inflight"' in source
    # Redis reads them so: the number computes as one, the parts join to the key.
    probe = (
        f"{source.split('local member = ARGV')[0]}"
        "return {type(now), tostring(now * 2), inflight_template_head .. 'd' .. "
        "inflight_template_tail, string.format(inflight_template, 'd')}"
    )
    assert redis_client.eval(probe, 0) == [b"number", b"5", b"p:%:d:inflight", b"p:%:d:inflight"]
    with pytest.raises(ValueError, match="not a Lua number"):
        scripts._source("abandon_attempt", {"now": scripts.Number(float("inf"))})
    # Not a template of one %s: no parts, the template is string.format's alone.
    for odd in ("p:%s:%s", "p:none", "p:%d"):
        assert "_head" not in scripts._source("abandon_attempt", {"inflight_template": odd})[2]
