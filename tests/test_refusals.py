"""Bad input is refused with the field named, and leaves no message and no record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import QUEUE, QUIET_URL, event
from webhooks import InvalidEvent, InvalidInput, InvalidURL
from webhooks.worker.task import deliver


def _screenshot(**overrides):
    shot = {
        "id": "s",
        "status": "uploaded",
        "download_url": "https://cdn.example.com/s.png",
        "ad": {"id": "a", "status": "uploaded"},
    }
    return {**shot, **overrides}


def _with_screenshot(shot):
    return event(data={"screenshot_set": {"id": "set", "screenshots": [shot]}})


@pytest.mark.parametrize(
    ("bad_event", "field"),
    [
        (event(type="screenshot_set.rejected"), "type"),
        (event(created_at="2026-11-26T10:00:00"), "created_at"),
        (event(created_at="yesterday"), "created_at"),
        (event(id=""), "id"),
        (event(data={}), "data.screenshot_set"),
        (event(typo=1), "typo"),
        (_with_screenshot(_screenshot(status="done")), "data.screenshot_set.screenshots.0.status"),
        (
            _with_screenshot(_screenshot(ad={"id": "a", "status": "captured"})),
            "data.screenshot_set.screenshots.0.ad.status",
        ),
        (_with_screenshot(_screenshot(download_url=None)), "data.screenshot_set.screenshots.0"),
        (
            _with_screenshot(_screenshot(site_url="ftp://x")),
            "data.screenshot_set.screenshots.0.site_url",
        ),
        (_with_screenshot(_screenshot(extra=True)), "data.screenshot_set.screenshots.0.extra"),
        (
            event(data={"screenshot_set": {"id": "set", "screenshots": []}}),
            "data.screenshot_set.screenshots",
        ),
        ("not an object", "event"),
    ],
)
def test_invalid_event_names_the_field_and_leaves_nothing(counts, bad_event, field):
    before = counts()
    with pytest.raises(InvalidEvent) as caught:
        deliver.apply_async(("https://example.com/hook", bad_event), queue=QUEUE)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert counts() == before


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com/hook",
        "ftp://example.com/",
        "http:///path",
        "https://exa mple.com/",
        "http://example.com:99999999/",
        "https://example.com/" + "a" * 2048,
        42,
        None,
    ],
)
def test_invalid_url_is_refused_and_leaves_nothing(counts, url):
    before = counts()
    with pytest.raises(InvalidURL) as caught:
        deliver.delay(url, event())
    assert caught.value.field == "url"
    assert counts() == before


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("https://example.com/",), {}, "event"),
        ((), {"event": event()}, "url"),
        (("https://example.com/", event(), "extra"), {}, "args"),
        (("https://example.com/",), {"evnt": event()}, "evnt"),
    ],
)
def test_wrong_call_shape_is_refused(counts, args, kwargs, field):
    before = counts()
    with pytest.raises(InvalidInput) as caught:
        deliver.apply_async(args, kwargs, queue=QUEUE)
    assert caught.value.field == field
    assert counts() == before


def test_a_valid_event_does_write_one_message_and_one_record(counts, redis_client):
    # The control for the tests above: the counters do move when input is good.
    queued, records = counts()
    result = deliver.apply_async(("https://example.com/hook", event()), queue=QUEUE)
    assert counts() == (queued + 1, records + 1)
    assert redis_client.exists(f"webhooks:delivery:{result.id}")


@pytest.fixture
def no_lpush_url(redis_client):
    """A Redis user that may do anything but LPUSH, the command that publishes a message."""
    user, password = f"no-lpush-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    redis_client.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-lpush"],
    )
    yield QUIET_URL.replace("redis://", f"redis://{user}:{password}@")
    redis_client.acl_deluser(user)


def test_a_message_that_cannot_be_published_leaves_no_record(no_lpush_url, tmp_path, quiet_db):
    # Redis refuses the message: the record, written in the same step, is not there.
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event()))
    before = quiet_db.dbsize()
    result = subprocess.run(
        [sys.executable, "-m", "webhooks", "send", "https://example.com/hook", str(event_file)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WEBHOOKS_REDIS_URL": no_lpush_url},
    )
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: could not write 1 deliveries to Redis") and (
        "can't run this command" in line and "retrying the same call is safe" in line
    ), line
    assert quiet_db.dbsize() == before == 0


def test_wrong_options_are_refused(counts):
    before = counts()
    with pytest.raises(InvalidInput) as caught:
        deliver.apply_async(("https://example.com/hook", event()), queue=QUEUE, headers={"x": "y"})
    assert caught.value.field == "headers"
    with pytest.raises(InvalidInput, match="its own task id"):
        deliver.apply_async(("https://example.com/hook", event()), task_id="mine")
    assert counts() == before


def test_field_names_from_the_input_cannot_break_the_line(counts):
    # Found by the property test: a key of "\x85" (NEL) split the one-line error.
    before = counts()
    with pytest.raises(InvalidEvent) as caught:
        deliver.apply_async(("https://example.com/", event(**{"\x85": None})), queue=QUEUE)
    assert len(str(caught.value).splitlines()) == 1
    assert caught.value.field == "\\x85"
    assert counts() == before
