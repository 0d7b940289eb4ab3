"""The producer's own data: what a webhook tells customers about."""

from django.db import models


# Django ships no type information (no django-stubs): its Model is Any to mypy.
class Approval(models.Model):  # type: ignore[misc]
    screenshot_set = models.CharField(max_length=64)

    class Meta:
        app_label = "shop"
