"""Django, against the real PostgreSQL: publish_on_commit and the outbox through a
connection alias, on commit and on rollback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.conftest import event, import_or_missing, tenant_deliveries
from webhooks.errors import InvalidInput
from webhooks.outbox.relay import drain
from webhooks.system import get_default

if TYPE_CHECKING:  # imported for real once Django is set up, in the shop fixture
    from tests.django_project.shop.models import Approval

django = import_or_missing("django")


@pytest.fixture(scope="module")
def shop(pg_dsn: str) -> Iterator[type[Approval]]:
    """The test project set up and migrated; its Approval model. The settings module is
    named for this module's tests only: Celery takes Django's fixups in any process
    that inherits DJANGO_SETTINGS_MODULE, such as the workers later tests start."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")
        yield from _set_up()


def _set_up() -> Iterator[type[Approval]]:
    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    from tests.django_project.shop.models import Approval

    yield Approval
    connections.close_all()


def test_published_after_the_commit_only(
    shop: type[Approval], two_endpoints: tuple[str, list[str]]
) -> None:
    from django.db import transaction

    from webhooks.contrib.django import publish_on_commit

    tenant, endpoints = two_endpoints
    sent = event()
    with transaction.atomic():
        shop.objects.create(screenshot_set="set_1")
        publish_on_commit(sent, tenant=tenant)
        assert tenant_deliveries(tenant) == []  # not before the commit
    assert sorted(tenant_deliveries(tenant)) == sorted((sent["id"], e) for e in endpoints)


def test_a_rollback_publishes_nothing(
    shop: type[Approval], two_endpoints: tuple[str, list[str]]
) -> None:
    from django.db import transaction

    from webhooks.contrib.django import publish_on_commit

    tenant, _ = two_endpoints
    before = shop.objects.count()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        shop.objects.create(screenshot_set="set_2")
        publish_on_commit(event(), tenant=tenant)
        1 / 0  # noqa: B018
    assert shop.objects.count() == before
    assert tenant_deliveries(tenant) == []


def test_outside_a_transaction_it_publishes_at_once(
    shop: type[Approval], two_endpoints: tuple[str, list[str]]
) -> None:
    from webhooks.contrib.django import publish_on_commit

    tenant, endpoints = two_endpoints
    publish_on_commit(event(), tenant=tenant)
    assert len(tenant_deliveries(tenant)) == len(endpoints)


def test_a_bad_event_fails_at_the_call(shop: type[Approval], tenant: str) -> None:
    from django.db import transaction

    from webhooks.contrib.django import publish_on_commit

    with transaction.atomic():
        with pytest.raises(InvalidInput) as refused:
            publish_on_commit({**event(), "id": ""}, tenant=tenant)
        assert refused.value.field == "id"
    assert tenant_deliveries(tenant) == []


def test_the_outbox_through_a_connection_alias(
    shop: type[Approval], outbox_dsn: str, two_endpoints: tuple[str, list[str]]
) -> None:
    from django.db import transaction

    from webhooks import outbox

    tenant, endpoints = two_endpoints
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        shop.objects.create(screenshot_set="set_3")
        outbox.add("default", event(), tenant=tenant)
        1 / 0  # noqa: B018
    assert drain(get_default(), outbox_dsn) == 0
    sent = event()
    with transaction.atomic():
        shop.objects.create(screenshot_set="set_4")
        outbox.add("default", sent, tenant=tenant)
    assert drain(get_default(), outbox_dsn) == 1
    assert sorted(tenant_deliveries(tenant)) == sorted((sent["id"], e) for e in endpoints)
    with pytest.raises(InvalidInput, match="no Django database named 'elsewhere'"):
        outbox.add("elsewhere", event(), tenant=tenant)
