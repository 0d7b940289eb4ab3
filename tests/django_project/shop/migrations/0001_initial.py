"""The producer's table, and the outbox's, as the README tells a Django project to
create it: webhooks.outbox.DDL in a RunSQL."""

from typing import ClassVar

from django.db import migrations, models

import webhooks.outbox


# Django ships no type information (no django-stubs): its Migration is Any to mypy.
class Migration(migrations.Migration):  # type: ignore[misc]
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.CreateModel(
            name="Approval",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("screenshot_set", models.CharField(max_length=64)),
            ],
        ),
        migrations.RunSQL(webhooks.outbox.DDL, reverse_sql="DROP TABLE webhooks_outbox"),
    ]
