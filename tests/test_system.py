"""The System: one object built from settings wires a deployment, and two of them live
side by side in one process, each seeing only its own data; the default is one of them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import REDIS_URL, database_url, event, own_database
from webhooks import Producer, Settings, System, get_default, set_default
from webhooks.errors import TenantNotFound
from webhooks.models import DeliveryStatus

SHARED_URL = database_url(8)  # this module's database only


@pytest.fixture
def shared(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    with own_database(8) as client:
        yield client


def _system(prefix: str) -> System:
    return System(Settings(redis_url=SHARED_URL, key_prefix=prefix))


def test_two_systems_in_one_process_each_see_only_their_own(shared: redis.Redis) -> None:
    alpha, beta = _system("alpha"), _system("beta")
    for system, tenant in ((alpha, "acct_a"), (beta, "acct_b")):
        system.tenants.add(tenant, "Customer")
        system.endpoints.add("https://hooks.example.com/in", tenant=tenant)
    sent = Producer(alpha).publish(event(), tenant="acct_a")
    assert len(sent) == 1
    (published,) = Producer(beta).publish(event(), tenant="acct_b")

    # Each reads its own tenants, endpoints, deliveries and figures, never the other's.
    assert [t.id for t in alpha.tenants.list()] == ["acct_a"]
    assert [t.id for t in beta.tenants.list()] == ["acct_b"]
    with pytest.raises(TenantNotFound):
        alpha.tenants.get("acct_b")
    with pytest.raises(TenantNotFound):
        Producer(beta).publish(event(), tenant="acct_a")
    assert [e.tenant_id for e in alpha.endpoints.all()] == ["acct_a"]
    assert alpha.deliveries.page()[0] == sent and beta.deliveries.page()[0] == [published]
    assert alpha.deliveries.statuses([published]) == [None]
    assert alpha.deliveries.stats(overdue_after=60)["pending"] == 1
    assert beta.deliveries.stats(overdue_after=60)["pending"] == 1

    # Every key either wrote starts with its own prefix; the queues are named by it too.
    written = {key.decode().split(":", 1)[0] for key in shared.scan_iter()}
    assert written == {"alpha", "beta"}, written
    assert alpha.app.conf.task_default_queue == "alpha"
    assert beta.app.conf.task_default_queue == "beta"
    assert shared.llen("alpha:alpha") == 1 and shared.llen("beta:beta") == 1
    assert alpha.app is not beta.app and System.of(beta.app) is beta
    # Either one's delivery is there with the status it was created in.
    assert beta.deliveries.get(published).status is DeliveryStatus.PENDING


def test_the_default_is_replaceable_and_public_functions_follow_it(shared: redis.Redis) -> None:
    import webhooks

    own = _system("gamma")
    previous = set_default(own)
    try:
        assert get_default() is own and webhooks.get_store() is own.deliveries
        assert webhooks.app is own.app
        webhooks.get_tenants().add("acct_g", "Gamma")
        webhooks.get_endpoints().add("https://hooks.example.com/g", tenant="acct_g")
        (delivery_id,) = webhooks.publish(event(), tenant="acct_g")
        assert own.deliveries.get(delivery_id).tenant_id == "acct_g"
        assert webhooks.deliver.app is own.app  # the task, on the default System's app
    finally:
        set_default(previous)
    assert get_default() is previous


def test_a_system_is_built_from_settings_only_when_asked() -> None:
    # Importing reads nothing; the default is built on first use, from the environment.
    previous = set_default(None)
    try:
        built = get_default()
        assert built is get_default() and built is not previous
        assert built.settings.redis_url == REDIS_URL
    finally:
        set_default(previous)


def test_no_module_reads_settings_at_import() -> None:
    # A setting that cannot be read: importing every module must not notice.
    code = (
        "import importlib, pkgutil, webhooks\n"
        "names = [m.name for m in pkgutil.walk_packages(webhooks.__path__, 'webhooks.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WEBHOOKS_RETRY_JITTER": "not a number"},
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 60  # every module of the package was imported
    # And the first use is where it is refused, naming it.
    refused = subprocess.run(
        [sys.executable, "-c", "import webhooks; webhooks.get_default()"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WEBHOOKS_RETRY_JITTER": "not a number"},
    )
    assert refused.returncode == 1 and "retry_jitter" in refused.stderr
