"""Metrics, logs, traces and failure signals, from a real cluster: two workers, a web
server and a metrics server on a Redis database of their own, a receiver and an OTLP
collector on 127.0.0.1, and a traced producer process.

One known mix runs once (the ``run`` fixture); each test reads one side of it:

- 5 deliveries succeed first try, 2 answer 503 fifteen times, 2 go to a closed
  port, 1 fails once and then succeeds (recovered), and 1 goes to a tenant's
  endpoint that answers 410 (disabled: gone);
- every failure is also an operational webhook, sent to a URL that fails each one
  once: 7 more deliveries of 2 attempts, none of which announces anything itself.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from tests.conftest import (
    OPERATOR_TOKEN,
    PORTAL_SECRET,
    QUIET_URL,
    WORKER_ENV,
    database_url,
    event,
    missing,
    stored,
)
from tests.otlp import Collector, Span
from webhooks.dev.receiver import Receiver
from webhooks.dev.server import free_port, start_server, stop_server
from webhooks.dev.worker import start_worker, stop_workers
from webhooks.models import Attempt, AttemptError, DeliveryStatus, ErrorKind, Run
from webhooks.settings import Settings
from webhooks.signing import new_secret, verify
from webhooks.storage.destinations import destination
from webhooks.system import get_default, get_store

OBSERVED_URL = database_url(12)  # this module's cluster only
OPERATIONAL_SECRET = new_secret()
TENANT = "acct_observed"

N_OK, M_503, K_REFUSED = 5, 2, 2
#: Every delivery the mix creates: the producer's 11, then 7 operational webhooks
#: (5 exhausted, 1 endpoint disabled, 1 recovered).
CREATED = N_OK + M_503 + K_REFUSED + 1 + 1 + 7
ATTEMPTS = {
    ("succeeded", "none", "2xx"): N_OK + 1 + 7,
    ("failed", "http_status", "5xx"): 15 * M_503 + 1 + 7,
    ("failed", "connect_refused", "none"): 15 * K_REFUSED,
    ("failed", "http_status", "4xx"): 1,
}
FINISHED = {"delivered": N_OK + 1 + 7, "retries_exhausted": M_503 + K_REFUSED + 1}
CONTRACT_FIELDS = {
    "event",
    "delivery_id",
    "tenant_id",
    "endpoint_id",
    "attempt",
    "outcome",
    "status_code",
    "duration_ms",
    "error_kind",
    "next_attempt_at",
}


Samples = dict[tuple[str, tuple[Any, ...]], float]


def scrape(url: str, token: str | None = OPERATOR_TOKEN) -> Samples:
    """Every sample of a /metrics page, parsed by Prometheus's own parser, as
    {(sample name, sorted labels): value}."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = requests.get(url, headers=headers, timeout=10)
    answer.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def total(samples: Samples, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


@dataclass
class Observed:
    plan: dict[str, Any]
    produced: dict[str, Any]
    metrics: Samples
    backlog: Samples
    from_metrics_server: Samples
    unauthenticated: int
    public: int
    exposition: str
    logs: list[str]
    spans: list[Span]
    signals: list[dict[str, Any]]
    endpoint_id: str


def produce(plan: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.observed", json.dumps(plan)],
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(done.stdout))


def wait_for(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def run(
    receiver: Receiver, redis_client: redis.Redis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    folder = tmp_path_factory.mktemp("observed")
    store = redis.Redis.from_url(OBSERVED_URL)
    store.flushdb()
    with Collector() as collector:
        env = {
            **WORKER_ENV,
            "WEBHOOKS_REDIS_URL": OBSERVED_URL,
            "WEBHOOKS_RETRY_BASE_SECONDS": "0.0001",
            "WEBHOOKS_API_TOKEN": OPERATOR_TOKEN,
            "WEBHOOKS_PORTAL_SECRET": PORTAL_SECRET,
            "WEBHOOKS_LOG_FORMAT": "json",
            "WEBHOOKS_TRACING": "true",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "webhooks-worker",
            "WEBHOOKS_OPERATIONAL_URL": receiver.url("/fail/1/operational"),
            "WEBHOOKS_OPERATIONAL_SECRET": OPERATIONAL_SECRET,
            "CELERY_CONFIG_MODULE": "tests.observed",
            "OBSERVED_SIGNALS": str(folder / "signals.jsonl"),
        }
        server, base = start_server(folder / "serve.log", env)
        workers = []
        try:
            operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
            requests.post(
                f"{base}/api/v1/tenants",
                json={"id": TENANT, "name": "Observed"},
                headers=operator,
                timeout=10,
            ).raise_for_status()
            endpoint = requests.post(
                f"{base}/api/v1/tenants/{TENANT}/endpoints",
                json={"url": receiver.url("/status/410/observed")},
                headers=operator,
                timeout=10,
            )
            endpoint.raise_for_status()
            with ThreadPoolExecutor() as starting:  # a start is mostly waiting: both at once
                workers = list(
                    starting.map(
                        lambda n: start_worker(
                            folder / f"worker{n}.log",
                            env,
                            "--concurrency=2",
                            f"--hostname=observed{n}@%h",
                        ),
                        (1, 2),
                    )
                )
            closed = f"http://127.0.0.1:{free_port()}/closed"
            plan = {
                "bulk": [[receiver.url("/ok/observed"), event()] for _ in range(N_OK)]
                + [[receiver.url("/status/503/observed"), event()] for _ in range(M_503)]
                + [[closed, event()] for _ in range(K_REFUSED)]
                + [[receiver.url("/fail/1/observed"), event()]],
                "tenant": TENANT,
                "published": [event()],
            }
            produced = produce(plan, env)
            metrics_url = f"{base}/metrics"
            wait_for(
                lambda: total(scrape(metrics_url), "webhooks_deliveries_finished_total") >= CREATED,
                120,
                "every delivery to finish",
            )
            time.sleep(0.5)  # anything doubled would show up by now
            metrics = scrape(metrics_url)
            attempts = sum(ATTEMPTS.values())
            wait_for(
                lambda: sum(1 for s in collector.all() if s.name == "webhooks.attempt") >= attempts,
                30,
                "the attempt spans",
            )
        finally:
            stop_workers(workers)
        # With no worker running: 3 messages wait in the broker, and 1 delivery due in
        # an hour is parked; once WEBHOOKS_RECOVERY_SECONDS pass, the 3 are overdue.
        produce(
            {
                "bulk": [[receiver.url("/ok/backlog"), event()] for _ in range(3)],
                "delayed": [[receiver.url("/ok/backlog"), event(), 3600]],
                "tenant": TENANT,
                "published": [],
            },
            env,
        )
        time.sleep(float(WORKER_ENV["WEBHOOKS_RECOVERY_SECONDS"]) + 0.5)
        backlog = scrape(metrics_url)
        port = free_port()
        with (folder / "metrics-server.log").open("wb") as log:
            metrics_server = subprocess.Popen(
                [sys.executable, "-m", "webhooks", "metrics-server", "--port", str(port)],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            from_metrics_server = wait_for(
                lambda: _try_scrape(f"http://127.0.0.1:{port}/metrics"), 15, "metrics-server"
            )
        finally:
            metrics_server.terminate()
            metrics_server.wait(10)
        unauthenticated = requests.get(metrics_url, timeout=10).status_code
        exposition = requests.get(
            metrics_url, timeout=10, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        ).text
        stop_server(server)
        server, base = start_server(
            folder / "public.log", {**env, "WEBHOOKS_METRICS_PUBLIC": "true"}
        )
        public = requests.get(f"{base}/metrics", timeout=10).status_code
        stop_server(server)
        spans = collector.all()
    logs = [line for n in (1, 2) for line in (folder / f"worker{n}.log").read_text().splitlines()]
    signals = [json.loads(line) for line in (folder / "signals.jsonl").read_text().splitlines()]
    yield Observed(
        plan,
        produced,
        metrics,
        backlog,
        from_metrics_server,
        unauthenticated,
        public,
        exposition,
        logs,
        spans,
        signals,
        endpoint.json()["id"],
    )
    store.flushdb()
    store.close()


def _try_scrape(url: str) -> Samples | None:
    try:
        return scrape(url, token=None)
    except requests.RequestException:
        return None


def test_every_counter_equals_what_happened(run: Observed) -> None:
    """Two workers ran the mix: the cluster-wide counters hold exactly its numbers."""
    metrics = run.metrics
    assert metrics[("webhooks_deliveries_created_total", ())] == CREATED
    made = {
        labels: value
        for (name, labels), value in metrics.items()
        if name == "webhooks_attempts_total" and value
    }
    assert made == {
        tuple(
            zip(("error_kind", "outcome", "status_class"), (kind, outcome, cls), strict=True)
        ): float(count)
        for (outcome, kind, cls), count in ATTEMPTS.items()
    }
    for status, count in FINISHED.items():
        assert metrics[("webhooks_deliveries_finished_total", (("status", status),))] == count
    assert metrics[("webhooks_endpoints_disabled_total", (("reason", "gone"),))] == 1
    assert metrics[("webhooks_endpoints_disabled_total", (("reason", "failing"),))] == 0
    attempts = sum(ATTEMPTS.values())
    assert metrics[("webhooks_attempt_duration_seconds_count", ())] == attempts
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in metrics.items()
        if name == "webhooks_attempt_duration_seconds_bucket"
    )
    assert [le for le, _ in buckets][:2] == [0.005, 0.01] and buckets[-1] == (
        float("inf"),
        attempts,
    )
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    assert 0 < metrics[("webhooks_attempt_duration_seconds_sum", ())] < attempts * 1.0
    for gauge in ("queue_depth", "parked", "overdue", "open_circuits", "archive_backlog"):
        assert metrics[(f"webhooks_{gauge}", ())] == 0, gauge


def test_gauges_show_the_backlog(run: Observed) -> None:
    """With no worker: the messages waiting in the broker, the parked retry, and the
    deliveries overdue as `webhooks stats` counts them; the metrics server agrees."""
    assert run.backlog[("webhooks_queue_depth", ())] == 3
    assert run.backlog[("webhooks_parked", ())] == 1
    assert run.backlog[("webhooks_overdue", ())] == 3
    assert run.backlog[("webhooks_deliveries_created_total", ())] == CREATED + 4
    assert run.from_metrics_server == run.backlog


def test_metrics_need_the_operator_unless_public(run: Observed) -> None:
    assert run.unauthenticated == 401
    assert run.public == 200


def test_the_exposition_passes_prometheus_own_lint(run: Observed) -> None:
    if shutil.which("promtool") is None:
        missing("promtool is not installed (Debian's prometheus; .ci/run installs it)")
    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=run.exposition,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def test_one_json_line_per_attempt(run: Observed) -> None:
    """Every line the workers wrote is JSON; each attempt wrote exactly one
    `attempt` line, with the contract's fields and nothing a customer controls."""
    lines = [json.loads(line) for line in run.logs]  # every one parses
    attempts = [line for line in lines if line["event"] == "attempt"]
    assert len(attempts) == sum(ATTEMPTS.values())
    assert len({(line["delivery_id"], line["attempt"]) for line in attempts}) == len(attempts)
    assert all(
        CONTRACT_FIELDS <= set(line) <= CONTRACT_FIELDS | {"level", "logger", "timestamp"}
        for line in attempts
    )
    kinds = Counter((line["outcome"], line["error_kind"]) for line in attempts)
    assert kinds[("failed", "connect_refused")] == 15 * K_REFUSED
    retried = [
        line
        for line in attempts
        if line["outcome"] == "failed"
        and line["attempt"] < 15
        and line["status_code"] == 503
        and line["tenant_id"] is None
    ]
    assert retried and all(line["next_attempt_at"] for line in retried)
    gone = [line for line in attempts if line["endpoint_id"] == run.endpoint_id]
    assert [(g["tenant_id"], g["status_code"], g["next_attempt_at"]) for g in gone] == [
        (TENANT, 410, None)
    ]
    text = "\n".join(run.logs)
    assert "cdn.example.com" not in text  # no event body
    assert OPERATIONAL_SECRET.removeprefix("whsec_") not in text
    # A receiver of a signal that raises is logged as an error, as JSON.
    failed = [line for line in lines if "the application's receiver failed" in json.dumps(line)]
    assert failed and all(line["level"] == "error" for line in failed)


def test_attempt_spans_descend_from_the_producer_span(run: Observed) -> None:
    """Each attempt of a delivery made by ``deliver_many`` (and by ``publish``) is in
    the producer's trace, under its span: retries published by a worker and by the
    promoter included."""
    assert run.produced["exported"] == ["producer"]
    by_id = {span.span_id: span for span in run.spans}
    ours = set(run.produced["bulk"]) | set(run.produced["published"])
    attempts = [
        span
        for span in run.spans
        if span.name == "webhooks.attempt" and span.attributes["webhooks.delivery_id"] in ours
    ]
    assert len(attempts) == sum(ATTEMPTS.values()) - 14  # all but the operational ones
    for span in attempts:
        assert span.trace_id == run.produced["trace_id"]
        ancestor = span
        while ancestor.parent_id in by_id:
            ancestor = by_id[ancestor.parent_id]
        assert ancestor.parent_id == run.produced["span_id"], span
    last = [span for span in attempts if span.attributes["webhooks.attempt"] == 15]
    assert len(last) == M_503 + K_REFUSED
    assert {span.attributes.get("http.response.status_code") for span in last} == {503, None}
    assert {span.attributes["webhooks.outcome"] for span in last} == {"failed"}


def test_signals_fire_once_each(run: Observed) -> None:
    """In the worker, after the record is written; a receiver that raises breaks nothing."""
    fired = Counter((s["signal"], s["id"]) for s in run.signals)
    assert set(fired.values()) == {1}
    bulk = run.produced["bulk"]
    exhausted = {s["id"]: s for s in run.signals if s["signal"] == "delivery_exhausted"}
    assert set(exhausted) == {*bulk[N_OK : N_OK + M_503 + K_REFUSED], *run.produced["published"]}
    assert all(s["status"] == "retries_exhausted" for s in exhausted.values())
    assert [exhausted[i]["attempts"] for i in bulk[N_OK : N_OK + M_503]] == [15] * M_503
    recovered = [s for s in run.signals if s["signal"] == "delivery_recovered"]
    assert [(s["id"], s["status"], s["attempts"]) for s in recovered] == [
        (bulk[-1], "delivered", 2)
    ]
    disabled = [s for s in run.signals if s["signal"] == "endpoint_disabled"]
    assert [(s["id"], s["enabled"], s["reason"]) for s in disabled] == [
        (run.endpoint_id, False, "gone")
    ]


def test_operational_webhooks_are_signed_and_never_recursive(
    run: Observed, receiver: Receiver
) -> None:
    """Each failure went to the operational URL once, signed; each of those failed once
    and was then delivered, yet none announced its own recovery."""
    received = receiver.received("/fail/1/operational")
    by_id = Counter(r.headers["webhook-id"] for r in received)
    assert len(by_id) == 7 and set(by_id.values()) == {2}
    bodies = [verify(r.body, r.headers, OPERATIONAL_SECRET) for r in received]
    kinds = Counter(body["type"] for body in bodies)
    assert kinds == {"delivery.exhausted": 10, "endpoint.disabled": 2, "delivery.recovered": 2}
    about = {body["data"].get("delivery_id") or body["data"]["endpoint_id"] for body in bodies}
    bulk = run.produced["bulk"]
    assert about == {*bulk[N_OK:], *run.produced["published"], run.endpoint_id}


def _attempt(number: int, status: int) -> Attempt:
    return Attempt(
        number=number,
        started_at=datetime.now(UTC),
        duration_ms=12.0,
        status_code=status,
        error=None
        if status < 300
        else AttemptError(kind=ErrorKind.HTTP_STATUS, message=f"HTTP {status}"),
        response_body="",
    )


def test_open_circuits_count_destinations_until_a_success(
    quiet_db: redis.Redis, settings_env: Any
) -> None:
    settings_env(breaker_failures="2")
    first, second, third = stored(
        event(),
        [("https://a.example/", None), ("https://a.example/2", None), ("https://b.example/", None)],
    )
    store, counters = get_store(), get_default().counters
    for delivery, status in ((first, 503), (second, 503), (third, 503)):
        store.record_attempt(
            Run(delivery.id),
            _attempt(1, status),
            DeliveryStatus.RETRYING,
            destination=destination(delivery.url, None),
        )
    assert counters.snapshot(3).open_circuits == 1  # a.example failed twice; b.example once
    store.record_attempt(
        Run(first.id, 0, 1),
        _attempt(2, 200),
        DeliveryStatus.DELIVERED,
        destination=destination(first.url, None),
    )
    assert counters.snapshot(3).open_circuits == 0
    snapshot = counters.snapshot(3).counters
    assert snapshot["attempts:failed:http_status:5xx"] == 3
    assert snapshot["finished:delivered"] == 1 and snapshot["created"] == 3


def test_metrics_off_writes_no_counter(quiet_db: redis.Redis, settings_env: Any) -> None:
    settings_env(metrics="false", breaker_failures="1")
    (delivery,) = stored(event(), [("https://a.example/", None)])
    get_store().record_attempt(
        Run(delivery.id),
        _attempt(1, 503),
        DeliveryStatus.RETRIES_EXHAUSTED,
        destination=destination(delivery.url, None),
    )
    get_store().stop_unfinished([delivery.id], "stopped")
    assert not quiet_db.exists("webhooks:metrics", "webhooks:open-circuits")
    assert quiet_db.hget(f"webhooks:delivery:{delivery.id}", "status") == b"retries_exhausted"


def test_stopping_counts_a_delivery_finished_once(quiet_db: redis.Redis) -> None:
    """Deliveries stopped without an attempt (their endpoint disabled) finish too; one
    that was final already is not counted again."""
    one, two = stored(event(), [("https://a.example/", None), ("https://b.example/", None)])
    store = get_store()
    assert store.stop_unfinished([one.id], "endpoint disabled") == [one.id]
    store.set_status(one.id, DeliveryStatus.RETRIES_EXHAUSTED, stop_reason="again")
    store.stop_unfinished([one.id, two.id], "endpoint disabled")
    assert get_default().counters.snapshot(3).counters["finished:retries_exhausted"] == 2


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"WEBHOOKS_OPERATIONAL_URL": "https://ops.example/hooks"}, "WEBHOOKS_OPERATIONAL_SECRET"),
        (
            {
                "WEBHOOKS_OPERATIONAL_URL": "https://ops.example/hooks",
                "WEBHOOKS_OPERATIONAL_SECRET": "not-a-secret",
            },
            "WEBHOOKS_OPERATIONAL_SECRET",
        ),
        ({"WEBHOOKS_LOG_FORMAT": "xml"}, "log_format"),
    ],
)
def test_bad_observability_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], named: str
) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=named):
        Settings()


@pytest.mark.slow
def test_tracing_without_opentelemetry_stops_the_worker() -> None:
    """WEBHOOKS_TRACING on, the otel extra absent: one line, before anything runs."""
    blocked = (
        "import sys; sys.modules['opentelemetry'] = None; "
        "from celery.__main__ import main; "
        "sys.argv = ['celery', '-A', 'webhooks', 'worker', '--without-mingle']; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked],
        capture_output=True,
        text=True,
        env={**os.environ, "WEBHOOKS_TRACING": "true", "WEBHOOKS_REDIS_URL": QUIET_URL},
        timeout=60,
    )
    assert done.returncode == 1
    assert "WEBHOOKS_TRACING is on but OpenTelemetry is not installed" in done.stderr


def test_an_attempt_makes_a_span_only_once_a_tracer_provider_is_set_up() -> None:
    """Without a provider, every span is a no-op: none is made. In a process of its own,
    as a tracer provider can be set only once."""
    script = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from webhooks.tracing import attempt_span

parent = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
with attempt_span(parent, "d1", 1, "https://example.com/hook?token=secret") as span:
    assert span._span is None
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
with attempt_span(parent, "d2", 2, "https://example.com/hook?token=secret") as span:
    assert span._span is not None
(made,) = exporter.get_finished_spans()
assert made.name == "webhooks.attempt", made.name
assert made.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
assert dict(made.attributes) == {
    "webhooks.delivery_id": "d2", "webhooks.attempt": 2, "server.address": "example.com"
}, made.attributes
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
