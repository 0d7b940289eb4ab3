"""The producer's own data: what a webhook tells customers about."""

from django.db import models


class Approval(models.Model):
    screenshot_set = models.CharField(max_length=64)

    class Meta:
        app_label = "shop"
