"""Property tests: any input is accepted, or refused with our own error type and no trace left."""

from __future__ import annotations

import json
import socket
import string

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import QUEUE, event
from webhooks.cli import main
from webhooks.errors import InvalidEvent, InvalidInput, InvalidURL
from webhooks.events import parse_event
from webhooks.guard import check_url
from webhooks.worker.task import deliver

fixture_ok = settings(deadline=None, max_examples=120,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


VALID = event()
PATHS = [path for path in _paths(VALID) if path]


@st.composite
def mutated_events(draw):
    """The valid event with one value replaced, or one key dropped or added."""
    raw = json.loads(json.dumps(VALID))
    path = draw(st.sampled_from(PATHS))
    parent = raw
    for part in path[:-1]:
        parent = parent[part]
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "replace":
        parent[path[-1]] = draw(json_values)
    elif action == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    return raw


@given(raw=mutated_events() | json_values)
@fixture_ok
def test_event_is_parsed_or_refused_with_invalid_event(raw, counts):
    before = counts()
    try:
        parse_event(raw)
    except InvalidEvent as exc:
        assert exc.field and str(exc).startswith(exc.field)
        with pytest.raises(InvalidEvent):
            deliver.apply_async(("https://example.com/", raw), queue=QUEUE)
        assert counts() == before
    else:
        deliver.apply_async(("https://example.com/", raw), queue=QUEUE)
        assert counts() == (before[0] + 1, before[1] + 1)


url_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
url_like = st.builds(
    lambda scheme, userinfo, host, port, path: f"{scheme}://{userinfo}{host}{port}{path}",
    st.sampled_from(["http", "https", "ftp", "HTTP", "", "javascript"]),
    st.sampled_from(["", "user@", "user:pw@", "@"]),
    st.one_of(st.from_regex(r"[a-z0-9.-]{0,20}", fullmatch=True),
              st.sampled_from(["127.0.0.1", "[::1]", "2130706433", "0x7f.1", "10.1.2.3",
                               "[fd00::1]", "localhost", "[::ffff:10.0.0.1]", "[bad", "a..b"])),
    st.sampled_from(["", ":80", ":0", ":99999", ":abc", ":"]),
    st.text(alphabet=string.printable, max_size=30),
)


@given(url=url_text | url_like)
@settings(deadline=None, max_examples=400)
def test_url_is_kept_unchanged_or_refused_with_invalid_url(url):
    try:
        assert check_url(url) == url
    except InvalidURL as exc:
        assert exc.field == "url" and "\n" not in str(exc)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLOSED = _closed_port()
# Text without "://" can never be a valid URL, and valid ones all point at a
# closed loopback port: whatever the CLI accepts here sends nothing off the machine.
cli_urls = url_text.filter(lambda text: "://" not in text) | st.builds(
    lambda path: f"http://127.0.0.1:{CLOSED}/{path}",
    st.text(alphabet=string.ascii_letters + string.digits + "/-_.~?=&", max_size=20))
event_files = st.one_of(
    mutated_events().map(json.dumps),
    st.just(json.dumps(VALID)),
    st.text(max_size=40),
    json_values.map(json.dumps),
)


@given(url=cli_urls, event_text=event_files)
@settings(deadline=None, max_examples=80,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_cli_send_accepts_or_refuses_in_one_line(url, event_text, counts, tmp_path):
    assume(not url.startswith("-"))  # that would be an option, not a URL
    event_file = tmp_path / "event.json"
    event_file.write_text(event_text)
    before = counts()
    result = CliRunner().invoke(main, ["send", url, str(event_file)])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                      SystemExit), result.exc_info
    if result.exit_code == 0:
        assert len(result.output.strip()) == 36  # the delivery id
        assert counts()[1] == before[1] + 1
    else:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert "Traceback" not in result.output
        assert counts() == before


@given(url=url_like, events=st.lists(st.text(max_size=30), max_size=3),
       description=st.text(max_size=50))
@fixture_ok
def test_endpoint_registration_accepts_or_refuses(url, events, description, redis_client):
    from webhooks.storage.endpoints import get_endpoints

    before = redis_client.zcard("webhooks:endpoints")
    try:
        endpoint, _ = get_endpoints().add(url, events or None, description)
    except InvalidInput:
        assert redis_client.zcard("webhooks:endpoints") == before
    else:
        # Registered endpoints are removed at once: publish() in other tests
        # must never fan out to these URLs.
        get_endpoints().delete(endpoint.id)
        assert endpoint.url == url
