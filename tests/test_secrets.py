"""Endpoints' signing secrets and header values encrypted at rest under
WEBHOOKS_ENCRYPTION_KEYS: nothing in clear in any Redis key or the AOF, deliveries
that still verify, ``webhooks secrets reencrypt`` after a key rotation, and a wrong
key that sends nothing (``secret_unreadable``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import standardwebhooks
from cryptography.fernet import Fernet
from pydantic import ValidationError

from tests.conftest import QUIET_URL, WORKER_ENV, as_bytes, event, until
from tests.test_cli import assert_one_line_error, invoke
from tests.web import Web
from webhooks.dev.receiver import Receiver
from webhooks.dev.redis_server import RedisProcess
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import SEALED_PREFIX, Endpoint
from webhooks.producer import Producer
from webhooks.settings import Settings
from webhooks.storage.cipher import UNENCRYPTED, Cipher, Resealed
from webhooks.storage.endpoints import EndpointStore
from webhooks.system import System, set_default

ROOT = Path(__file__).resolve().parent.parent
OLD_KEY, NEW_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()
TOKEN_HEADER = "Authorization"


def keyed(keys: str | None, url: str = QUIET_URL) -> System:
    """A System on ``url`` whose WEBHOOKS_ENCRYPTION_KEYS is ``keys`` (None: unset)."""
    return System(Settings(redis_url=url, encryption_keys=keys))


def token() -> str:
    """A customer's bearer token, unique to the test, to look for in clear."""
    return f"tok_{uuid.uuid4().hex}"


def raw(system: System, endpoint_id: str) -> bytes:
    stored = system.redis.get(system.keys.endpoint(endpoint_id))
    assert isinstance(stored, bytes)
    return stored


def in_clear(secret: str) -> bytes:
    """What a signing secret looks like wherever it is stored in clear: its random part."""
    return secret.removeprefix("whsec_").encode()


def reencrypt(keys: str | None) -> subprocess.CompletedProcess[str]:
    """``webhooks secrets reencrypt --json`` with these keys, on the quiet database."""
    previous = set_default(keyed(keys))
    try:
        return invoke("secrets", "reencrypt", "--json")
    finally:
        set_default(previous)


def test_a_malformed_key_is_refused_naming_the_setting_and_never_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = "not-a-key-" + uuid.uuid4().hex
    with pytest.raises(ValidationError) as refused:
        Settings(encryption_keys=f"{NEW_KEY},{bad}")
    assert "key 2 of 2 in WEBHOOKS_ENCRYPTION_KEYS" in str(refused.value)
    assert bad not in str(refused.value) and NEW_KEY not in str(refused.value)
    assert NEW_KEY not in repr(Settings(encryption_keys=NEW_KEY))

    # As a command reports it: one line, naming the setting.
    monkeypatch.setenv("WEBHOOKS_ENCRYPTION_KEYS", f"{bad}, {NEW_KEY}")
    previous = set_default(None)
    try:
        result = invoke("secrets", "reencrypt")
    finally:
        set_default(previous)
    assert_one_line_error(result, "WEBHOOKS_ENCRYPTION_KEYS", "key 1 of 2")
    assert bad not in result.stderr and NEW_KEY not in result.stderr


def test_reencrypt_moves_clear_and_old_values_to_the_first_key(
    quiet_db: redis.Redis, tenant: str
) -> None:
    clear, old = keyed(None), keyed(OLD_KEY)
    before, before_secret = clear.endpoints.add(
        "https://example.com/clear", tenant=tenant, headers={TOKEN_HEADER: token()}
    )
    rotated, rotated_secret = old.endpoints.add(
        "https://example.com/old", tenant=tenant, headers={TOKEN_HEADER: token()}
    )
    assert in_clear(before_secret) in raw(clear, before.id)  # as before the setting existed

    first = reencrypt(f"{NEW_KEY},{OLD_KEY}")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "endpoints": 2,
        "encrypted": 2,
        "reencrypted": 2,
        "current": 0,
        "unreadable": [],
    }
    # The new key alone now reads every value, and none is left in clear.
    new = keyed(NEW_KEY)
    for endpoint, secret in ((before, before_secret), (rotated, rotated_secret)):
        read = new.endpoints.get(endpoint.id)
        assert not read.unreadable(read.created_at)
        assert read.signing_secrets(read.created_at) == [secret]
        assert read.headers == endpoint.headers
        stored = raw(new, endpoint.id)
        assert in_clear(secret) not in stored
        assert endpoint.headers[TOKEN_HEADER].encode() not in stored
    assert old.endpoints.get(rotated.id).unreadable(rotated.created_at)  # the old key is done

    again = reencrypt(f"{NEW_KEY},{OLD_KEY}")  # safe to repeat: nothing left to move
    assert json.loads(again.stdout)["current"] == 4
    assert json.loads(again.stdout)["encrypted"] == json.loads(again.stdout)["reencrypted"] == 0


def test_reencrypt_names_an_unreadable_endpoint_and_leaves_it_as_it_was(
    quiet_db: redis.Redis, tenant: str
) -> None:
    stranger, clear = keyed(Fernet.generate_key().decode()), keyed(None)
    lost, _ = stranger.endpoints.add("https://example.com/lost", tenant=tenant)
    kept, kept_secret = clear.endpoints.add("https://example.com/kept", tenant=tenant)
    lost_before = raw(clear, lost.id)

    result = reencrypt(NEW_KEY)
    assert result.returncode == 1
    assert json.loads(result.stdout)["unreadable"] == [lost.id]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: 1 endpoints") and lost.id in line
    assert "WEBHOOKS_ENCRYPTION_KEYS" in line
    assert raw(clear, lost.id) == lost_before
    assert in_clear(kept_secret) not in raw(clear, kept.id)  # the others went on


def test_reencrypt_without_keys_is_refused(quiet_db: redis.Redis) -> None:
    assert_one_line_error(reencrypt(None), "WEBHOOKS_ENCRYPTION_KEYS", "not set")


def test_reencrypt_keeps_a_change_made_while_it_runs(quiet_db: redis.Redis, tenant: str) -> None:
    old = keyed(OLD_KEY)
    endpoint, secret = old.endpoints.add("https://example.com/busy", tenant=tenant)

    class Interrupted(Cipher):
        """Another writer changes the endpoint after reencrypt has read it, once."""

        interrupted = False

        def reseal_endpoint(self, read: Endpoint) -> tuple[Endpoint, Counter[Resealed]]:
            if not self.interrupted:
                type(self).interrupted = True
                old.endpoints.update(endpoint.id, {"description": "changed meanwhile"})
            return super().reseal_endpoint(read)

    system = keyed(f"{NEW_KEY},{OLD_KEY}")
    racing = EndpointStore(
        system.redis,
        system.keys,
        system.settings,
        system.deliveries,
        Interrupted([NEW_KEY, OLD_KEY]),
    )
    done = racing.reencrypt()
    assert Interrupted.interrupted
    assert done.values[Resealed.REENCRYPTED] == 1 and not done.unreadable
    after = keyed(NEW_KEY).endpoints.get(endpoint.id)
    assert after.description == "changed meanwhile"  # rerun on the changed record, not lost
    assert after.signing_secrets(after.created_at) == [secret]


def test_a_wrong_key_masks_in_listings_and_an_update_keeps_the_values(
    quiet_db: redis.Redis, tenant: str
) -> None:
    right, wrong = keyed(OLD_KEY), keyed(NEW_KEY)
    endpoint, secret = right.endpoints.add(
        "https://example.com/kept", tenant=tenant, headers={TOKEN_HEADER: token()}
    )
    (listed,) = wrong.endpoints.all(tenant)
    shown = json.dumps(listed.public())
    assert "unreadable" in shown and SEALED_PREFIX not in shown
    assert listed.unreadable(listed.created_at)

    wrong.endpoints.update(endpoint.id, {"description": "edited under the wrong key"})
    read = right.endpoints.get(endpoint.id)
    assert read.description == "edited under the wrong key"
    assert read.signing_secrets(read.created_at) == [secret]
    assert read.headers == endpoint.headers


# The rest runs a worker with the new key on a Redis of its own, with AOF on.


@dataclass
class Deployment:
    """A Redis of the module's own, with its AOF, and a worker with ``NEW_KEY`` on it."""

    redis_server: RedisProcess
    system: System
    worker_log: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "webhooks", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, **self.env()},
        )
        assert done.returncode == 0, done.stderr
        return done

    def env(self) -> dict[str, str]:
        return {
            **WORKER_ENV,
            "WEBHOOKS_REDIS_URL": self.redis_server.url,
            "WEBHOOKS_ENCRYPTION_KEYS": NEW_KEY,
        }


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("secrets-redis")
    with RedisProcess(workdir) as server:
        deployment = Deployment(server, keyed(NEW_KEY, server.url), workdir / "worker.log")
        worker = start_worker(deployment.worker_log, deployment.env(), "--concurrency=2")
        try:
            yield deployment
        finally:
            stop_worker(worker)
            deployment.system.close()


def every_value(system: System) -> bytes:
    """Every key of the database and everything in it, whatever its type."""
    client = system.redis
    found: list[object] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        found.append(key)
        if kind == b"string":
            found.append(client.get(key))
        elif kind == b"hash":
            found.extend(part for pair in client.hgetall(key).items() for part in pair)
        elif kind == b"list":
            found.extend(client.lrange(key, 0, -1))
        elif kind == b"set":
            found.extend(client.smembers(key))
        elif kind == b"zset":
            found.extend(client.zrange(key, 0, -1))
        elif kind == b"stream":
            entries: Any = client.xrange(key)
            for entry_id, fields in entries:
                found.append(entry_id)
                found.extend(part for pair in fields.items() for part in pair)
        else:
            raise AssertionError(f"a key of type {kind!r} this scan does not read")
    return b"\n".join(as_bytes(item) for item in found)


def aof(server: RedisProcess) -> bytes:
    """Every append-only file of the server (Redis 7: under appendonlydir/)."""
    files = [path for path in server.workdir.rglob("*.aof*") if path.is_file()]
    assert files, list(server.workdir.iterdir())
    return b"".join(path.read_bytes() for path in files)


def delivered(system: System, delivery_id: str) -> bool:
    return system.deliveries.get(delivery_id).status.value == "delivered"


@pytest.mark.slow
def test_nothing_is_stored_in_clear_and_deliveries_still_verify(
    deployment: Deployment, receiver: Receiver
) -> None:
    tenant, bearer, path = f"acct_{uuid.uuid4().hex[:8]}", token(), f"/ok/{uuid.uuid4().hex}"
    deployment.cli("tenants", "add", tenant)
    added = deployment.cli(
        "endpoints", "add", receiver.url(path), "--tenant", tenant,
        "--header", f"{TOKEN_HEADER}: Bearer {bearer}", "--json",
    )  # fmt: skip
    shown = json.loads(added.stdout)
    secret = shown["secret"]  # shown once, in clear, to whoever added it
    system = deployment.system

    (delivery_id,) = Producer(system).publish(event(), tenant=tenant)
    until(lambda: delivered(system, delivery_id), 30, "the delivery was not delivered")
    (request,) = receiver.received(path)
    assert standardwebhooks.Webhook(secret).verify(request.body, request.headers)["id"]
    assert request.headers[TOKEN_HEADER] == f"Bearer {bearer}"

    stored = every_value(system)
    assert shown["id"].encode() in stored and delivery_id.encode() in stored  # the scan reads
    assert in_clear(secret) not in stored and bearer.encode() not in stored
    until(lambda: shown["id"].encode() in aof(deployment.redis_server), 5, "no AOF written")
    written = aof(deployment.redis_server)
    assert in_clear(secret) not in written and bearer.encode() not in written
    assert UNENCRYPTED not in deployment.worker_log.read_text()


@pytest.mark.slow
def test_a_wrong_key_sends_nothing_until_reencrypt_moves_it_to_the_workers_key(
    deployment: Deployment, receiver: Receiver
) -> None:
    system, tenant, path = deployment.system, f"acct_{uuid.uuid4().hex[:8]}", f"/ok/{uuid.uuid4()}"
    system.tenants.add(tenant)
    # Added under the old key, which the worker does not have.
    bearer = token()
    endpoint, secret = keyed(OLD_KEY, deployment.redis_server.url).endpoints.add(
        receiver.url(path), tenant=tenant, headers={TOKEN_HEADER: f"Bearer {bearer}"}
    )
    (delivery_id,) = Producer(system).publish(event(), tenant=tenant)
    until(
        lambda: len(system.deliveries.get(delivery_id).attempts) >= 2,
        30,
        "no attempts were recorded",
    )
    failed = system.deliveries.get(delivery_id)
    assert failed.status.value == "retrying"  # retried with the usual backoff
    for attempt in failed.attempts[:2]:
        assert attempt.error is not None and attempt.error.kind.value == "secret_unreadable"
        assert endpoint.id in attempt.error.message and bearer not in attempt.error.message
        assert attempt.status_code is None
    assert receiver.received(path) == []  # never sent unsigned, nor without its header
    counters = system.redis.hgetall(system.keys.metrics())
    assert int(counters[b"attempts:failed:secret_unreadable:none"]) >= 2

    # The operator rotates: the worker's key first, the old one second, and re-encrypts.
    done = keyed(f"{NEW_KEY},{OLD_KEY}", deployment.redis_server.url).endpoints.reencrypt()
    assert done.values[Resealed.REENCRYPTED] == 2 and not done.unreadable
    # The worker, with the new key alone, now signs and sends on the next retry.
    until(lambda: delivered(system, delivery_id), 30, "not delivered after reencrypt")
    (request,) = receiver.received(path)
    assert standardwebhooks.Webhook(secret).verify(request.body, request.headers)["id"]
    assert request.headers[TOKEN_HEADER] == f"Bearer {bearer}"


def test_without_keys_the_worker_and_serve_warn_once_at_start(
    worker: subprocess.Popen[bytes], worker_log: Path, web: Web
) -> None:
    until(lambda: UNENCRYPTED in web.log.read_text(), 5, "serve did not warn")
    assert worker_log.read_text().count(UNENCRYPTED) == 1
    assert web.log.read_text().count(UNENCRYPTED) == 1
