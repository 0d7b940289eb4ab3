"""Property tests: any input is accepted, or refused with our own error type and no trace left."""

from __future__ import annotations

import json
import socket
import string
import uuid
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import QUEUE, event
from webhooks.cli import main
from webhooks.errors import InvalidEvent, InvalidInput, InvalidURL
from webhooks.events import parse_event
from webhooks.guard import check_url
from webhooks.system import get_settings, get_store
from webhooks.worker.task import deliver

fixture_ok = settings(
    deadline=None, max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
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
    # A URL of its own: the same event to the same URL is one delivery, however often.
    url = f"https://example.com/{uuid.uuid4().hex}"
    try:
        parse_event(raw)
    except InvalidEvent as exc:
        assert exc.field and str(exc).startswith(exc.field)
        with pytest.raises(InvalidEvent):
            deliver.apply_async((url, raw), queue=QUEUE)
        assert counts() == before
    else:
        deliver.apply_async((url, raw), queue=QUEUE)
        assert counts() == (before[0] + 1, before[1] + 1)


url_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
url_like = st.builds(
    lambda scheme, userinfo, host, port, path: f"{scheme}://{userinfo}{host}{port}{path}",
    st.sampled_from(["http", "https", "ftp", "HTTP", "", "javascript"]),
    st.sampled_from(["", "user@", "user:pw@", "@"]),
    st.one_of(
        st.from_regex(r"[a-z0-9.-]{0,20}", fullmatch=True),
        st.sampled_from(
            [
                "127.0.0.1",
                "[::1]",
                "2130706433",
                "0x7f.1",
                "10.1.2.3",
                "[fd00::1]",
                "localhost",
                "[::ffff:10.0.0.1]",
                "[bad",
                "a..b",
            ]
        ),
    ),
    st.sampled_from(["", ":80", ":0", ":99999", ":abc", ":"]),
    st.text(alphabet=string.printable, max_size=30),
)


@given(url=url_text | url_like)
@settings(deadline=None, max_examples=400)
def test_url_is_kept_unchanged_or_refused_with_invalid_url(url):
    try:
        checked = check_url(url, get_settings())
    except InvalidURL as exc:
        assert exc.field == "url" and "\n" not in str(exc)
    else:
        host = urlsplit(url).hostname or ""
        # Unchanged, but for an internationalised host: then its ASCII (IDNA) form.
        if host.isascii():
            assert checked == url
        else:
            checked_host = urlsplit(checked).hostname
            assert checked_host is not None and checked_host.isascii()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLOSED = _closed_port()
# Text without "://" can never be a valid URL, and valid ones all point at a
# closed loopback port: whatever the CLI accepts here sends nothing off the machine.
cli_urls = url_text.filter(lambda text: "://" not in text) | st.builds(
    lambda path: f"http://127.0.0.1:{CLOSED}/{path}",
    st.text(alphabet=string.ascii_letters + string.digits + "/-_.~?=&", max_size=20),
)
# The bytes of an event file: JSON text in several encodings, and anything at all.
event_files = (
    st.one_of(
        mutated_events().map(json.dumps),
        st.just(json.dumps(VALID)),
        st.text(max_size=40),
        json_values.map(json.dumps),
    ).flatmap(
        lambda text: st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]).map(
            lambda encoding: text.encode(encoding, "surrogatepass")
        )
    )
    | st.binary(max_size=60)
    | (st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth))
    | (st.integers(4000, 6000).map(lambda digits: b'{"id": ' + b"7" * digits + b"}"))
)


@given(url=cli_urls, event_bytes=event_files)
@settings(
    deadline=None, max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_cli_send_accepts_or_refuses_in_one_line(url, event_bytes, counts, tmp_path):
    assume(not url.startswith("-"))  # that would be an option, not a URL
    event_file = tmp_path / "event.json"
    event_file.write_bytes(event_bytes)
    before = counts()
    result = CliRunner().invoke(main, ["send", url, str(event_file)])
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exc_info
    if result.exit_code == 0:
        assert len(result.output.strip()) == 36  # the delivery id
        # One more record, or none when an earlier example sent this event to this URL.
        assert before[1] <= counts()[1] <= before[1] + 1
        assert get_store().get(result.output.strip())
    else:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert "Traceback" not in result.output
        assert counts() == before


@given(
    url=url_like,
    events=st.lists(st.text(max_size=30), max_size=3),
    description=st.text(max_size=50),
)
@fixture_ok
def test_endpoint_registration_accepts_or_refuses(url, events, description, redis_client, tenant):
    from webhooks.system import get_endpoints

    before = redis_client.zcard("webhooks:endpoints")
    try:
        endpoint, _ = get_endpoints().add(url, events or None, description, tenant=tenant)
    except InvalidInput:
        assert redis_client.zcard("webhooks:endpoints") == before
    else:
        get_endpoints().delete(endpoint.id)
        assert endpoint.url == check_url(url, get_settings()) and endpoint.tenant_id == tenant


spans = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda digits, unit: f"{digits}{unit}",
        st.from_regex(r"[0-9]{1,500}", fullmatch=True),
        st.sampled_from("smhdx"),
    ),
    st.builds(
        lambda digits, decimals, unit: f"{digits}.{decimals}{unit}",
        st.from_regex(r"[0-9]{1,400}", fullmatch=True),
        st.from_regex(r"[0-9]{1,5}", fullmatch=True),
        st.sampled_from("smhd"),
    ),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda moment: moment.isoformat()),
)


@given(since=spans, until=spans)
@settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_cli_recover_windows_are_taken_or_refused_in_one_line(since, until, quiet_db):
    assume(not since.startswith("-") and not until.startswith("-"))
    before = quiet_db.dbsize()
    result = CliRunner().invoke(
        main, ["recover", "--endpoint", "ep_property", "--since", since, "--until", until]
    )
    assert isinstance(result.exception, SystemExit | None), result.exc_info
    assert result.exit_code != 0  # no such endpoint, when the window itself is fine
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and "Traceback" not in result.output
    assert quiet_db.dbsize() == before
