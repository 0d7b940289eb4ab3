"""This product's event catalog: ``screenshot_set.approved``, in the words of the
webhooks reference.

Registered through :func:`~webhooks.events.event_type`, as any user's own event
types are, and loaded because ``WEBHOOKS_EVENT_MODULES`` names this module by
default. The engine imports nothing from here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from .events import Event, HttpURL, Id, Model, Time, event_type

__all__ = [
    "Ad",
    "AdStatus",
    "Screenshot",
    "ScreenshotSet",
    "ScreenshotSetApproved",
    "ScreenshotSetApprovedData",
    "ScreenshotStatus",
]


class AdStatus(StrEnum):
    """What happened when the ad creative was loaded."""

    UPLOADED = "uploaded"  # the ad creative was captured successfully
    NOT_FOUND = "not_found"  # the creative asset could not be found when loading the ad
    NET_READ_TIMEOUT = "net_read_timeout"  # network issues while loading the ad
    GENERIC_ERROR = "generic_error"  # another error while loading the ad


class ScreenshotStatus(StrEnum):
    """What happened when the screenshot was generated."""

    UPLOADED = "uploaded"  # the screenshot was generated successfully
    AD_NOT_CAPTURED = "ad_not_captured"  # the ad was not captured, so no screenshot
    NET_READ_TIMEOUT = "net_read_timeout"  # network issues while generating it
    NO_SLOTS_FOUND = "no_slots_found"  # the site had no ad slot matching the ad's dimensions
    SITE_UNREACHABLE = "site_unreachable"  # the requested site was not reachable
    SSL_ERROR = "ssl_error"  # an SSL error while generating it
    GENERIC_ERROR = "generic_error"  # another error while capturing it


class Ad(Model):
    """The ad creative placed in the screenshot."""

    id: Id = Field(description="Identifier of the ad.")
    status: AdStatus = Field(description="Outcome of loading the ad creative.")
    name: str | None = Field(None, max_length=500, description="Human-readable name of the ad.")
    creative_url: HttpURL | None = Field(
        None, description="Where the creative asset was loaded from."
    )


class Screenshot(Model):
    """One screenshot of the set: the ad shown on one site."""

    # The schema's form of _uploaded_has_download_url below.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "properties": {"status": {"const": ScreenshotStatus.UPLOADED.value}},
                "required": ["status"],
            },
            "then": {
                "properties": {"download_url": {"type": "string"}},
                "required": ["download_url"],
            },
        }
    )

    id: Id = Field(description="Identifier of the screenshot.")
    status: ScreenshotStatus = Field(description="Outcome of generating the screenshot.")
    ad: Ad = Field(description="The ad this screenshot shows.")
    site_url: HttpURL | None = Field(None, description="The page the screenshot was taken on.")
    download_url: HttpURL | None = Field(
        None,
        description="Where to download the image. Present whenever status is 'uploaded'.",
    )
    captured_at: Time | None = Field(
        None, description="When the screenshot was taken (UTC, ISO-8601)."
    )

    @model_validator(mode="after")
    def _uploaded_has_download_url(self) -> Screenshot:
        # "Ready for download" is the point of the event: an uploaded screenshot
        # with nothing to download would leave the receiver stuck.
        if self.status is ScreenshotStatus.UPLOADED and self.download_url is None:
            raise ValueError("download_url is required when status is 'uploaded'")
        return self


class ScreenshotSet(Model):
    """A set of screenshots approved together."""

    id: Id = Field(description="Identifier of the screenshot set.")
    screenshots: list[Screenshot] = Field(
        min_length=1, max_length=10_000, description="The screenshots of the set."
    )
    name: str | None = Field(None, max_length=500, description="Human-readable name of the set.")
    download_url: HttpURL | None = Field(
        None, description="An archive with every uploaded screenshot of the set, if one is offered."
    )
    approved_at: Time | None = Field(None, description="When the set was approved (UTC, ISO-8601).")


class ScreenshotSetApprovedData(Model):
    """The ``data`` of ``screenshot_set.approved``."""

    screenshot_set: ScreenshotSet


_APPROVED_EXAMPLE: JsonDict = {
    "id": "evt_example_approved",
    "type": "screenshot_set.approved",
    "created_at": "2026-01-15T09:30:00Z",
    "data": {
        "screenshot_set": {
            "id": "set_1042",
            "screenshots": [
                {
                    "id": "shot_1",
                    "status": "uploaded",
                    "ad": {
                        "id": "ad_77",
                        "status": "uploaded",
                        "name": "Spring sale, 300x250",
                        "creative_url": "https://cdn.example.com/creatives/ad_77.png",
                    },
                    "site_url": "https://news.example.com/",
                    "download_url": "https://files.example.com/screenshots/shot_1.png",
                    "captured_at": "2026-01-15T09:28:41Z",
                },
                {
                    "id": "shot_2",
                    "status": "no_slots_found",
                    "ad": {
                        "id": "ad_78",
                        "status": "not_found",
                        "name": None,
                        "creative_url": None,
                    },
                    "site_url": "https://weather.example.org/",
                    "download_url": None,
                    "captured_at": "2026-01-15T09:29:05Z",
                },
            ],
            "name": "Spring sale, week 3",
            "download_url": "https://files.example.com/sets/set_1042.zip",
            "approved_at": "2026-01-15T09:30:00Z",
        }
    },
}


@event_type("screenshot_set.approved")
class ScreenshotSetApproved(Event):
    """Fired when a set of screenshots is ready for download."""

    # The catalog's example (GET /api/v1/event-types) and what a test event sends;
    # tests check that it validates, against the model and against the schema.
    model_config = ConfigDict(json_schema_extra={"examples": [_APPROVED_EXAMPLE]})

    type: Literal["screenshot_set.approved"] = Field(description="The event type.")
    data: ScreenshotSetApprovedData
