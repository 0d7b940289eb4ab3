"""The ``webhooks`` command, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from click.testing import CliRunner

from tests.conftest import REDIS_URL, event
from webhooks.cli import main
from webhooks.events import event_schema
from webhooks.system import get_store

KEYS = [
    "id",
    "url",
    "tenant_id",
    "endpoint_id",
    "event_id",
    "event_type",
    "status",
    "created_at",
    "updated_at",
    "next_attempt_at",
    "attempts",
    "test",
    "ordering_key",
    "waiting_behind",
]
ATTEMPT_KEYS = ["number", "started_at", "duration_ms", "status_code", "error", "response_body"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhooks", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WEBHOOKS_REDIS_URL": REDIS_URL},
    )


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in this process (quicker than ``run``), as ``run`` reports it."""
    result = CliRunner().invoke(main, list(args))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.usefixtures("worker")
def test_send_then_show_and_list(tmp_path, receiver, wait_for):
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event(id="evt_cli")))
    sent = run("send", receiver.url("/ok"), str(event_file))
    assert sent.returncode == 0, sent.stderr
    delivery_id = sent.stdout.strip()
    wait_for(delivery_id)

    # The command line once (the send above), then in this process: the same commands.
    shown = json.loads(invoke("show", delivery_id, "--json").stdout)
    assert list(shown) == KEYS
    assert list(shown["attempts"][0]) == ATTEMPT_KEYS
    assert (shown["id"], shown["status"], shown["event_id"]) == (
        delivery_id,
        "delivered",
        "evt_cli",
    )
    assert shown["created_at"].endswith("Z")

    human = invoke("show", delivery_id)
    assert human.returncode == 0 and delivery_id in human.stdout

    listed = json.loads(invoke("list", "--status", "delivered", "--limit", "500", "--json").stdout)
    assert delivery_id in [d["id"] for d in listed]
    assert all(d["status"] == "delivered" for d in listed)
    assert invoke("list", "--limit", "3").returncode == 0


def test_send_reads_stdin(receiver, redis_client):
    sent = run("send", receiver.url("/ok"), "-", stdin=json.dumps(event()))
    assert sent.returncode == 0, sent.stderr
    assert redis_client.exists(f"webhooks:delivery:{sent.stdout.strip()}")


def _records(redis_client) -> int:
    # Delivery records only: earlier tests' retries still add attempt lists meanwhile.
    return sum(
        1 for key in redis_client.scan_iter("webhooks:delivery:*") if not key.endswith(b":attempts")
    )


def test_bad_input_is_one_line_and_non_zero(tmp_path, redis_client):
    before = _records(redis_client)
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": ')
    # A process of its own once: nothing else (a warning, a log line) reaches stderr.
    assert_one_line_error(run("send", "https://example.com/", str(broken)), "not valid JSON")

    # The rest in this process (a second or more less each): the same main() and errors.
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(event(created_at="soon")))
    assert_one_line_error(invoke("send", "https://example.com/", str(wrong)), "created_at")
    assert_one_line_error(invoke("send", "gopher://example.com/", str(wrong)), "url")
    assert_one_line_error(
        invoke("send", "https://example.com/", str(tmp_path / "missing.json")), "missing.json"
    )
    assert_one_line_error(invoke("show", "no-such-delivery"), "no-such-delivery")
    assert_one_line_error(invoke("list", "--status", "lost"), "lost")
    assert_one_line_error(invoke("list", "--limit", "0"), "limit")
    assert _records(redis_client) == before


def test_unreachable_redis_is_one_line(tmp_path):
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event()))
    result = subprocess.run(
        # A well-formed id: one that is not is not found without asking Redis.
        [sys.executable, "-m", "webhooks", "show", "00000000-0000-5000-8000-000000000000"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WEBHOOKS_REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert_one_line_error(result, "Redis at redis://127.0.0.1:1/0")


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("WEBHOOKS_REDIS_URL", "http://127.0.0.1:6379/0", "WEBHOOKS_REDIS_URL: must start with"),
        ("WEBHOOKS_TIMEOUT_SECONDS", "soon", "WEBHOOKS_TIMEOUT_SECONDS: Input should be a valid"),
        ("WEBHOOKS_RECOVERY_SECONDS", "1", "WEBHOOKS_RECOVERY_SECONDS must exceed"),
        (
            "WEBHOOKS_ARCHIVE_DSN",
            "mysql://root:hunter2@db/x",
            "WEBHOOKS_ARCHIVE_DSN: must be a postgresql:// URL, not mysql://",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(setting, value, says):
    result = subprocess.run(
        [sys.executable, "-m", "webhooks", "stats"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, setting: value},
    )
    assert_one_line_error(result, says)
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr  # a DSN's password is never repeated


def test_schema_prints_the_committed_schema():
    result = invoke("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == event_schema()


@pytest.mark.usefixtures("worker")
def test_endpoint_commands_end_to_end(tmp_path, receiver, wait_for):
    # In this process: the commands are the same, and a process each would take a
    # second apiece (the commands above run as real processes).
    tenant = f"acct_cli_{uuid.uuid4().hex[:8]}"
    assert (
        json.loads(invoke("tenants", "add", tenant, "--name", "CLI", "--json").stdout)["id"]
        == tenant
    )
    added = invoke(
        "endpoints",
        "add",
        receiver.url("/gone-once/cli"),
        "--tenant",
        tenant,
        "--event",
        "screenshot_set.approved",
        "--description",
        "from the CLI",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    endpoint = json.loads(added.stdout)
    endpoint_id, secret = endpoint["id"], endpoint["secret"]
    assert secret.startswith("whsec_") and endpoint["event_types"] == ["screenshot_set.approved"]
    human = invoke("endpoints", "add", receiver.url("/ok/cli-human"), "--tenant", tenant)
    assert "whsec_" in human.stdout and "shown once" in human.stdout

    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event(id="evt_cli_publish")))
    published = json.loads(invoke("publish", str(event_file), "--tenant", tenant, "--json").stdout)
    assert (published["event_id"], published["tenant_id"]) == ("evt_cli_publish", tenant)
    assert len(published["delivery_ids"]) == 2
    for delivery_id in published["delivery_ids"]:
        wait_for(delivery_id)

    shown = json.loads(invoke("endpoints", "show", endpoint_id, "--json").stdout)
    assert shown["enabled"] is False and "410" in shown["disabled_reason"]
    assert "410 Gone" in invoke("endpoints", "show", endpoint_id).stdout
    gone = [d for d in published["delivery_ids"] if "gone-once" in get_store().get(d).url]
    assert "stopped early: endpoint disabled" in invoke("show", gone[0]).stdout
    assert secret not in json.dumps(shown)

    assert json.loads(invoke("endpoints", "enable", endpoint_id, "--json").stdout)["enabled"]
    recovered = json.loads(
        invoke("recover", "--endpoint", endpoint_id, "--since", "10m", "--json").stdout
    )
    assert len(recovered["delivery_ids"]) == 1
    delivery = wait_for(recovered["delivery_ids"][0], lambda d: d.status.value == "delivered")
    assert [a.number for a in delivery.attempts] == [1, 2]

    assert invoke("redeliver", delivery.id, "--json").returncode == 0
    wait_for(delivery.id, lambda d: len(d.attempts) == 3 and d.status.value == "delivered")

    rotated = json.loads(
        invoke("endpoints", "rotate-secret", endpoint_id, "--grace", "60", "--json").stdout
    )
    assert rotated["secret"] != secret and len(rotated["secrets"]) == 2
    assert rotated["secrets"][0]["expires_at"] is not None
    disabled = json.loads(
        invoke("endpoints", "disable", endpoint_id, "--reason", "maintenance", "--json").stdout
    )
    assert disabled["disabled_reason"] == "maintenance"
    listed = json.loads(invoke("endpoints", "list", "--json").stdout)
    assert endpoint_id in [e["id"] for e in listed]
    assert json.loads(invoke("endpoints", "delete", endpoint_id, "--json").stdout)["deleted"]
    assert_one_line_error(invoke("endpoints", "show", endpoint_id), endpoint_id)
    assert "deleted tenant" in invoke("tenants", "delete", tenant).stdout


def test_endpoint_and_replay_commands_refuse_bad_input(redis_client, tenant):
    before = redis_client.zcard("webhooks:endpoints")
    assert_one_line_error(
        invoke("endpoints", "add", "ftp://example.com/", "--tenant", tenant), "url"
    )
    assert_one_line_error(
        invoke("endpoints", "add", "https://example.com/", "--tenant", tenant, "--event", "nope"),
        "nope",
    )
    assert_one_line_error(invoke("endpoints", "add", "https://example.com/"), "--tenant")
    assert_one_line_error(
        invoke("endpoints", "add", "https://example.com/", "--tenant", "acct_nobody"), "no tenant"
    )
    assert redis_client.zcard("webhooks:endpoints") == before
    assert_one_line_error(invoke("endpoints", "disable", "ep_missing"), "ep_missing")
    assert_one_line_error(invoke("endpoints", "rotate-secret", "ep_missing"), "ep_missing")
    assert_one_line_error(invoke("redeliver", "no-such-delivery"), "no-such-delivery")
    assert_one_line_error(
        invoke("recover", "--endpoint", "ep_x", "--since", "last week"), "last week"
    )
    assert_one_line_error(
        invoke("recover", "--endpoint", "ep_missing", "--since", "1h"), "ep_missing"
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        ('{"id": "x"}'.encode("utf-16"), "unknown event type"),  # decoded, then checked
        (b"\xff\xfe", "not valid JSON"),
        (b'{"id": "\xc3\x28"}', "not UTF-8"),
        (b'{"id": ' + b"9" * 5000 + b"}", "4300 digits"),
        (b'{"id": 1e999}', "too large"),
        (b'{"id": "a", "id": "b"}', "id: appears twice"),
    ],
    ids=["deep", "utf-16", "bom-only", "bad-utf-8", "huge-int", "huge-float", "duplicate-key"],
)
def test_hostile_event_files_are_one_line(tmp_path, quiet_db, content, fragment):
    before = quiet_db.dbsize()
    event_file = tmp_path / "event.json"
    event_file.write_bytes(content)
    for command in (["send", "https://example.com/"], ["publish", "--tenant", "acct_any"]):
        assert_one_line_error(invoke(*command, str(event_file)), fragment)
    assert quiet_db.dbsize() == before


@pytest.mark.parametrize("span", ["99999999999d", "9" * 400 + "s", "1e9d"])
def test_spans_that_overflow_are_one_line(span, quiet_db):
    before = quiet_db.dbsize()
    for option in ("--since", "--until"):
        args = ["recover", "--endpoint", "ep_x", "--since", "1h", option, span]
        assert_one_line_error(invoke(*args), "--since" if option == "--since" else "--until")
    assert quiet_db.dbsize() == before


def test_a_10_kb_id_is_cut_in_the_message():
    huge = "x" * 10_000
    for args in (["show", huge], ["redeliver", huge], ["endpoints", "show", huge]):
        result = invoke(*args)
        assert_one_line_error(result, "(10,000 characters)")
        assert len(result.stderr) < 300, len(result.stderr)
