"""Settings: every knob of a deployment, read from ``WEBHOOKS_*`` environment variables
when a :class:`Settings` is made (a :class:`~webhooks.system.System` makes one)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

import standardwebhooks
from cryptography.fernet import Fernet
from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "EgressProxy",
    "SentinelURL",
    "Settings",
    "bad_setting",
    "check_archive_dsn",
    "origin_of",
    "shown_url",
]

_REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")
_SENTINEL_OPTIONS = {"master", "password", "sentinel_password", "username"}


def shown_url(url: str) -> str:
    """``url`` with its passwords hidden, for messages and logs: the one before an @,
    and a ``sentinel://`` URL's ``password`` and ``sentinel_password`` parameters."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, hosts = netloc.rpartition("@")
        user, colon, _ = credentials.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{hosts}"
    query = re.sub(r"((?:^|&)(?:sentinel_)?password=)[^&]*", r"\1***", parts.query)
    return parts._replace(netloc=netloc, query=query).geturl()


def check_archive_dsn(dsn: str) -> str:
    """``dsn`` if it is a PostgreSQL URL (``postgresql://`` or ``postgres://``)."""
    scheme = urlsplit(dsn).scheme
    if scheme not in ("postgresql", "postgres"):
        shown = f"{scheme}://" if scheme else "no scheme"
        raise ValueError(f"must be a postgresql:// URL, not {shown}")
    return dsn


@dataclass(frozen=True)
class SentinelURL:
    """A ``sentinel://host:port[,host:port...]/DB?master=NAME`` Redis URL, read.

    ``password`` (and ``username``) are the Redis primary's, ``sentinel_password``
    the sentinels' own; both are query parameters, so that one URL can name them
    apart. A sentinel without a port is on 26379.
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        parts = urlsplit(url)
        if parts.scheme != "sentinel":
            raise ValueError(f"not a sentinel:// URL: {parts.scheme}://")
        if "@" in parts.netloc:
            raise ValueError(
                "a sentinel:// URL takes its passwords as ?password= (the "
                "primary's) and ?sentinel_password=, not before an @"
            )
        sentinels = []
        for address in filter(None, parts.netloc.split(",")):
            match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?", address)
            if match is None or not 0 < int(match[2] or 26379) < 65536:
                raise ValueError(f"sentinel address {address!r} is not host:port")
            sentinels.append((match[1].strip("[]"), int(match[2] or 26379)))
        if not sentinels:
            raise ValueError(
                "a sentinel:// URL names at least one sentinel: "
                "sentinel://host:port[,host:port...]/DB?master=NAME"
            )
        path = parts.path.strip("/") or "0"
        if not path.isdigit():
            raise ValueError(f"the database after the sentinels must be a number, not {path!r}")
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        if unknown := sorted(set(query) - _SENTINEL_OPTIONS):
            raise ValueError(
                f"unknown sentinel:// option {unknown[0]!r}; known: "
                f"{', '.join(sorted(_SENTINEL_OPTIONS))}"
            )
        single = {name: values[-1] for name, values in query.items()}
        if not single.get("master"):
            raise ValueError("a sentinel:// URL names the monitored primary: ?master=NAME")
        return cls(
            tuple(sentinels),
            single["master"],
            int(path),
            single.get("username") or None,
            single.get("password") or None,
            single.get("sentinel_password") or None,
        )

    def kombu_url(self) -> str:
        """The same, as kombu's sentinel transport reads it: one ``sentinel://`` URL per
        sentinel, joined by ``;``, the primary's credentials in each; the primary's name
        and the sentinels' password go in transport options."""
        auth = ""
        if self.password is not None or self.username is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        return ";".join(
            f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{self.db}"
            for host, port in self.sentinels
        )


@dataclass(frozen=True)
class EgressProxy:
    """A forward proxy's ``http://[user:password@]host:port`` URL, read: where attempts
    connect to ask for a CONNECT tunnel, and the credentials they ask with.

    ``shown`` is what messages and logs may say of it: its scheme, host and port, never
    the credentials.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> EgressProxy:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            # Only the scheme is repeated: the rest may hold the proxy's password.
            found = f"it starts with {parts.scheme}://" if parts.scheme else "it has no scheme"
            raise ValueError(
                "must be the http:// (or https://) URL of a forward proxy that answers "
                f"CONNECT, such as http://user:password@proxy.internal:3128; {found}"
            )
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the proxy's port is not a number from 1 to 65535") from None
        if not parts.hostname:
            raise ValueError("names no proxy host: http://host:port")
        if port == 0:
            raise ValueError("the proxy's port is not a number from 1 to 65535")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("is a proxy's address only: http://[user:password@]host:port")
        return cls(
            parts.scheme,
            parts.hostname,
            port or (443 if parts.scheme == "https" else 80),
            unquote(parts.username) if parts.username is not None else None,
            unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def _comma_separated(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


EventModules = Annotated[
    tuple[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")], ...
    ],
    NoDecode,
    BeforeValidator(_comma_separated),
]

Networks = Annotated[
    tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
    NoDecode,
    BeforeValidator(_comma_separated),
]


# --- The portal's embedding and brand ------------------------------------------------

#: A host as a CSP source may name it: DNS labels, or an IPv4 address; nothing that
#: could end the source list (a space, ``;``, ``,``) or widen it (``*``).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*"
#: The origins that may be plain http: a browser treats them as secure contexts, and
#: they never leave the machine (development, and the tests' second origin).
_LOOPBACK_ORIGIN = re.compile(r"http://(?:localhost|127(?:\.[0-9]{1,3}){3}|\[::1\])(?::[0-9]+)?")
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
_MAX_BRAND_URL = 2048
_MAX_BRAND_NAME = 60


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL whose host is a plain name or address
    (safe to write into a Content-Security-Policy), lower-cased; None for any other."""
    parts = urlsplit(url)
    match = re.fullmatch(rf"({_HOST}|\[::1\])(?::([0-9]{{1,5}}))?", parts.netloc)
    if parts.scheme not in ("http", "https") or match is None:
        return None
    if match[2] is not None and not 0 < int(match[2]) < 65536:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _frame_ancestor(origin: str, number: int, total: int) -> str:
    """One origin of WEBHOOKS_PORTAL_FRAME_ANCESTORS, as a CSP source, or a ValueError
    naming it by its place (the operator's own value: shown, cut)."""
    found = origin_of(origin)
    shown = origin[:100]
    if found is None or origin.lower().rstrip("/") != found:
        raise ValueError(
            f"origin {number} of {total} ({shown!r}) is not scheme://host[:port] "
            "(such as https://dashboard.example.com: no path, no wildcard)"
        )
    if found.startswith("http://") and not _LOOPBACK_ORIGIN.fullmatch(found):
        raise ValueError(
            f"origin {number} of {total} ({shown!r}) must be https:// (http:// only for "
            "localhost and 127.0.0.1, for development)"
        )
    return found


Origins = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_separated)]


class Settings(BaseSettings):
    """Every knob of the service; the settings reference in the docs is generated from
    these fields and their descriptions."""

    # Inputs hidden from errors: pydantic's message would otherwise repeat the value
    # refused, which for the keys, tokens and secrets here is the secret itself.
    model_config = SettingsConfigDict(
        env_prefix="WEBHOOKS_",
        frozen=True,
        extra="ignore",
        hide_input_in_errors=True,
        # The brand's settings are also read under a second name (their aliases).
        validate_by_name=True,
    )

    redis_url: str = Field(
        "redis://localhost:6379/0",
        description="Redis used both as the Celery broker and as the delivery store: "
        "`redis://`, `rediss://`, `unix://`, or `sentinel://host:port[,host:port...]/DB"
        "?master=NAME` (with `password` and `sentinel_password` when they are set) for a "
        "primary that Redis Sentinel fails over.",
    )
    broker_url: str | None = Field(
        None,
        description="The Celery broker, when not the store's Redis: `amqp://...` for "
        "RabbitMQ. Unset: WEBHOOKS_REDIS_URL.",
    )
    broker_confirm_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="On RabbitMQ (publisher confirms on): how long a publish waits for "
        "the broker to confirm its messages. Past it the call fails with an error naming "
        "the broker (`deliver_many` and the other producer calls undo what they were for "
        "and raise `EnqueueFailed`) instead of waiting for a silent broker for ever.",
    )
    key_prefix: str = Field(
        "webhooks",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Starts every Redis key and names the Celery queue: deployments with "
        "different prefixes share one Redis database without seeing each other's data.",
    )
    event_modules: EventModules = Field(
        ("webhooks.catalog",),
        description="Comma-separated Python modules that register the event types this "
        "deployment sends (with `webhooks.events.event_type`), imported when it starts; "
        "the default is this product's own catalog, `screenshot_set.approved`.",
    )
    redis_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="A Redis command that gets no answer in this long fails (a "
        "stalled Redis); each is tried again up to 3 times on a lost connection or a timeout.",
    )
    retry_base_seconds: float = Field(
        5.27,
        gt=0,
        description="Base of the backoff: retry n waits base * 2**n seconds. "
        "5.27 makes the 14 waits add up to 23 h 59 min.",
    )
    retry_jitter: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Each wait is scaled by a random factor in [1 - jitter, 1 + jitter]; "
        "0 turns it off.",
    )
    timeout_seconds: float = Field(
        15.0, gt=0, description="Deadline for one whole attempt: connect, send, headers and body."
    )
    connect_timeout_seconds: float = Field(
        5.0, gt=0, description="Deadline for the TCP (and TLS) connection within an attempt."
    )
    retry_after_max_seconds: float = Field(
        3600,
        ge=0,
        description="A 429 or 503 with Retry-After delays the next attempt by at least that "
        "long, up to this cap.",
    )
    secret_rotation_grace_seconds: float = Field(
        86400,
        ge=0,
        description="After rotate-secret, how long the old secret keeps signing beside the "
        "new one.",
    )
    encryption_keys: SecretStr | None = Field(
        None,
        description="Comma-separated keys that encrypt endpoints' signing secrets and "
        "header values in Redis, each the URL-safe base64 of 32 random bytes (what "
        "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key()"
        ".decode())'` prints). The first encrypts; every one decrypts, so a new key goes "
        "first and the old one stays until `webhooks secrets reencrypt` has run. Unset: "
        "stored in clear, and workers and `webhooks serve` warn at start.",
    )
    disable_after_seconds: float = Field(
        432000,
        gt=0,
        description="An endpoint with no 2XX for this long, and at least one delivery exhausted "
        "meanwhile, is disabled (5 days).",
    )
    allowed_networks: Networks = Field(
        (),
        description="Comma-separated CIDRs that deliveries may reach although the guard "
        "forbids them (loopback, private, ...). Empty by default.",
    )
    https_only: bool = Field(False, description="Refuse http:// destinations.")
    egress_proxy: SecretStr | None = Field(
        None,
        description="A forward proxy that every attempt goes through, so that receivers "
        "see its static address: `http://host:port`, or `http://user:password@host:port` "
        "(sent as Proxy-Authorization: Basic); `https://` for TLS with the proxy, checked "
        "against WEBHOOKS_CA_BUNDLE like receivers. The worker still resolves and checks each "
        "destination, then asks the proxy to CONNECT to the checked address, for http:// "
        "and https:// destinations alike; TLS inside the tunnel keeps the host name for SNI "
        "and the certificate. A proxy that refuses or fails gives the error kind "
        "`proxy_error`, and nothing goes out directly. Unset: attempts connect directly.",
    )
    ca_bundle: str | None = Field(
        None,
        description="CA bundle (PEM file) to verify receivers' TLS certificates with, "
        "instead of the certifi bundle.",
    )
    max_payload_bytes: int = Field(
        262_144, gt=0, description="Largest event body accepted, in bytes (256 KB)."
    )
    park_threshold_seconds: float = Field(
        30,
        ge=0,
        description="A retry waiting longer than this is parked in Redis instead of "
        "being held by a worker as a broker ETA message.",
    )
    recovery_seconds: float = Field(
        120,
        gt=0,
        description="An attempt claimed but never recorded (its worker died) is run "
        "again within this bound; also how late a delivery must be to count as overdue.",
    )
    promote_interval_seconds: float = Field(
        0.1, gt=0, description="How often each worker's promoter looks for due parked retries."
    )
    visibility_timeout_seconds: float | None = Field(
        None,
        gt=0,
        description="Redis broker visibility timeout, in force only where kombu emulates "
        "acknowledgements: a `rediss://` or `unix://` broker, or one whose "
        "`broker_transport_options` turn `ack_emulation` back on. When unset, derived "
        "from the other settings: the park threshold plus five attempt timeouts plus "
        "30 s (see webhooks/broker/config.py).",
    )
    drain_runs: int = Field(
        # Each drain's end costs a Celery message cycle and a claim of its own: at 128
        # rather than 32, 5 % less CPU per delivery (python -m bench.profile, 2026-12-06).
        128,
        ge=0,
        description="How many more runs a pool process takes off its message's queue "
        "itself (Redis: RPOP; RabbitMQ: basic.get), one at a time, once that message's "
        "run is over, "
        "before it goes back to the worker for the next message: each skips the "
        "worker's per-message work (its fetch, the hand-over to the pool process, "
        "the task's bookkeeping). Runs taken this way are not Celery tasks of their "
        "own (Flower counts the message that started them). 0 turns it off.",
    )
    drain_seconds: float = Field(
        1.0,
        gt=0,
        description="How long a pool process goes on taking runs itself (see "
        "`WEBHOOKS_DRAIN_RUNS`) before it goes back to the worker: what it adds to a "
        "warm shutdown, beside the attempt in flight.",
    )
    destination_concurrency: int = Field(
        4,
        ge=1,
        description="Attempts in flight to one destination (an endpoint, or a host "
        "for bare URLs) across all workers; more wait their turn without counting.",
    )
    destination_admission_margin: int | None = Field(
        0,
        ge=0,
        description="Admission at publish: a destination gets at most its concurrency "
        "limit plus this many first runs out at once (in the broker or in flight); a new "
        "delivery over that waits in the destination's queue from its creation, at no "
        "Celery message, and runs as a slot frees: in the worker whose attempt freed it "
        "(with `WEBHOOKS_DRAIN_RUNS`), else its message goes out then (on a Redis "
        "broker in the store's Redis, straight onto the queue; on others, through the "
        "promoter). Empty: no admission (every first run is published at once).",
    )
    adaptive_pacing: bool = Field(
        True,
        description="Slow a struggling destination down instead of retrying it into the "
        "ground: 429 and 503 answers, Retry-After, timeouts and rising latency halve "
        "the attempts in flight and the rate it gets (a destination with no rate "
        "limit gets one then), down to 1 in flight and 1 a second; successes raise "
        "them again, by about 1 a second per second, up to the configured limits.",
    )
    breaker_failures: int = Field(
        10, ge=1, description="Consecutive failed attempts that open a destination's circuit."
    )
    breaker_stalled_seconds: float | None = Field(
        None,
        gt=0,
        description="A destination at its concurrency limit that has had no answer "
        "within this many seconds, for this long, answers nothing (a blackhole): its "
        "circuit opens then, without waiting for its attempts to time out one by one. "
        "Unset: `WEBHOOKS_TIMEOUT_SECONDS`, so that a receiver that answers within the "
        "deadline, however slowly, is never taken for a blackhole.",
    )
    breaker_cooldown_seconds: float = Field(
        30,
        gt=0,
        description="How long an open circuit parks a destination's deliveries "
        "before one probe attempt; doubles after each failed probe, up to 15 minutes.",
    )
    retention_days: float | None = Field(
        None,
        gt=0,
        description="How long a finished delivery and its attempts are kept: in Redis "
        "after their last change, or, with WEBHOOKS_ARCHIVE_DSN, in the archive after their "
        "creation (whole days of it are dropped at once). Unset: 30 days, 90 with an archive.",
    )
    archive_dsn: SecretStr | None = Field(
        None,
        description="A `postgresql://` URL: finished deliveries move from Redis to this "
        "database's archive tables (`webhooks archive init` creates them), and every view "
        "reads both. Unset: the delivery log stays in Redis.",
    )
    archive_after_seconds: float = Field(
        60,
        ge=0,
        description="How long after its final attempt was recorded a finished delivery "
        "moves to the archive.",
    )
    archive_in_workers: bool = Field(
        True,
        description="Every worker archives beside its promoter; `false` for deployments "
        "that run `webhooks archive run` instead.",
    )
    archive_lease_seconds: float = Field(
        30,
        gt=0,
        description="How long a batch an archiver took is its own; after that (its "
        "archiver died) another archiver takes it.",
    )
    archive_batch: int = Field(
        1000,
        ge=1,
        le=10_000,
        description="Deliveries an archiver moves per PostgreSQL transaction (Redis "
        "forgets them 500 at a time, so that no script holds Redis for long).",
    )
    idempotency_hours: float = Field(
        24,
        gt=0,
        description="With an archive: how long after its creation publishing the same "
        "event again still returns the same delivery and creates nothing, once the "
        "delivery has left Redis (a compact marker per delivery stays in Redis that long).",
    )
    api_token: SecretStr | None = Field(
        None,
        description="The operator's bearer token for the HTTP API and the console; "
        "`webhooks serve` refuses to start without one (at least 24 characters).",
    )
    portal_secret: SecretStr | None = Field(
        None,
        description="The key that signs portal tokens (customers' links); "
        "`webhooks serve` refuses to start without one (at least 32 characters).",
    )
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="Where people reach `webhooks serve`: the base "
        "of the links `webhooks portal-link` prints.",
    )
    portal_frame_ancestors: Origins = Field(
        (),
        description="Comma-separated origins whose pages may frame the portal (an "
        "`<iframe>` in your own dashboard; `webhooks portal-link --embed` prints one), each "
        "`https://host[:port]` (`http://` only for localhost and 127.0.0.1). Only the "
        "portal's pages may be framed, never the console or the API. Empty: none may.",
    )
    portal_brand_name: str | None = Field(
        None,
        description="The name the portal shows in its header and title instead of "
        f"`webhooks`: at most {_MAX_BRAND_NAME} printable characters.",
    )
    portal_brand_logo_url: str | None = Field(
        None,
        validation_alias=AliasChoices("WEBHOOKS_PORTAL_BRAND_LOGO_URL", "WEBHOOKS_PORTAL_LOGO_URL"),
        description="An `https://` URL of the logo the portal shows beside the name; "
        "the portal's Content-Security-Policy allows images from that origin only. Also "
        "read as `WEBHOOKS_PORTAL_LOGO_URL`.",
    )
    portal_brand_accent_color: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "WEBHOOKS_PORTAL_BRAND_ACCENT_COLOR", "WEBHOOKS_PORTAL_ACCENT_COLOR"
        ),
        description="The portal's accent colour (links, main buttons), as `#rrggbb`. "
        "Also read as `WEBHOOKS_PORTAL_ACCENT_COLOR`.",
    )
    server_max_header_bytes: int = Field(
        16_384,
        ge=1024,
        description="`webhooks serve`: the most bytes a request's line and headers may "
        "take together (16 KB); past it the request is answered 431 and its connection "
        "closed, counted as the bytes arrive.",
    )
    server_max_headers: int = Field(
        100, ge=1, description="`webhooks serve`: the most headers a request may have (431)."
    )
    server_max_request_line_bytes: int = Field(
        8192,
        ge=256,
        description="`webhooks serve`: the longest request line (method, URL and "
        "version), in bytes (414).",
    )
    server_header_timeout_seconds: float = Field(
        10,
        gt=0,
        description="`webhooks serve`: how long a client has to send a request's line "
        "and headers, from opening the connection or from the previous answer (408, or "
        "the connection closed when nothing came).",
    )
    server_body_timeout_seconds: float = Field(
        30,
        gt=0,
        description="`webhooks serve`: how long a client has to send a request's body "
        "once its headers have arrived (408); 30 s lets the largest event through at "
        "9 KB/s.",
    )
    server_max_connections: int = Field(
        1000,
        ge=1,
        description="`webhooks serve`: connections open at once; one more is answered "
        "503 as soon as it is accepted, and closed. Keep it under the process's open-file "
        "limit (`ulimit -n`).",
    )
    server_keep_alive_seconds: int = Field(
        5,
        ge=1,
        description="`webhooks serve`: an idle keep-alive connection is closed after this "
        "many seconds without a request (uvicorn's `timeout_keep_alive`).",
    )
    session_hours: float = Field(
        12,
        gt=0,
        description="How long a console session lasts; a portal session lasts as "
        "long as the link it was opened with.",
    )
    redeliver_per_minute: int = Field(
        10,
        ge=1,
        le=100_000,
        description="How many redeliver and recover calls a tenant's portal (its links "
        "and sessions) may make in any minute, counted in Redis across every `serve` "
        "process; past it, 429 with Retry-After. Each makes our workers POST to a URL the "
        "tenant chose.",
    )
    operator_redeliver_per_minute: int = Field(
        600,
        ge=1,
        le=100_000,
        description="The same limit for the operator's token and sessions, per tenant.",
    )
    test_events_per_minute: int = Field(
        5,
        ge=1,
        le=100_000,
        description="How many test events (`POST .../endpoints/{id}/test`, the portal's "
        "Send test event) one endpoint may be sent in any minute, whoever asks, counted in "
        "Redis across every `serve` process; past it, 429 with Retry-After.",
    )
    metrics: bool = Field(
        True,
        description="Count deliveries and attempts in Redis for `GET /metrics` and "
        "`webhooks metrics-server` (in the same call that records them).",
    )
    metrics_public: bool = Field(
        False,
        description="Serve `GET /metrics` on `webhooks serve` without the operator's "
        "token (for a scraper inside your network).",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json`: every log line of workers and `webhooks serve` is one "
        "JSON object, and each attempt writes one line with `event` = `attempt`.",
    )
    tracing: bool = Field(
        False,
        description="With the `otel` extra installed: trace workers with "
        "OpenTelemetry (Celery, requests and Redis instrumented), exporting over OTLP as the "
        "standard `OTEL_*` variables say.",
    )
    operational_url: str | None = Field(
        None,
        description="Also send `delivery.exhausted`, `endpoint.disabled` and "
        "`delivery.recovered` as signed webhooks to this URL.",
    )
    outbox_dsn: SecretStr | None = Field(
        None,
        description="The PostgreSQL database of the transactional outbox: the default "
        "of `webhooks outbox --dsn`, and, when set, every worker also runs a relay.",
    )
    outbox_batch: int = Field(
        100, ge=1, le=10_000, description="Outbox rows a relay takes per transaction."
    )
    outbox_poll_seconds: float = Field(
        1.0, gt=0, description="How often an idle relay looks for rows when no NOTIFY wakes it."
    )
    operational_secret: SecretStr | None = Field(
        None,
        description="The `whsec_` secret that signs operational webhooks; required "
        "with WEBHOOKS_OPERATIONAL_URL.",
    )

    @property
    def claim_lease_seconds(self) -> float:
        """How long an attempt's claim and destination slot hold without renewal: the
        attempt's deadline plus 5 s, at most WEBHOOKS_RECOVERY_SECONDS. The worker
        renews them while the attempt runs; a dead worker's lapse by themselves."""
        return min(self.recovery_seconds, self.timeout_seconds + 5)

    @property
    def claim_keep_seconds(self) -> float:
        """The least a claim holds, renewed or not: the attempt's deadline and the 1 s
        past it that WEBHOOKS_RECOVERY_SECONDS must leave. A lease is shortened to end
        on a whole second only down to this (:func:`~webhooks.clock.lease_end`)."""
        return self.timeout_seconds + 1

    @property
    def stalled_seconds(self) -> float:
        """How long a full destination may go without an answer before its circuit
        opens: WEBHOOKS_BREAKER_STALLED_SECONDS, or the attempt deadline."""
        return self.breaker_stalled_seconds or self.timeout_seconds

    @property
    def retention_seconds(self) -> float:
        """How long a finished delivery is kept: WEBHOOKS_RETENTION_DAYS, or by default
        30 days (90 with an archive, whose days cost disk, not memory)."""
        days = self.retention_days
        if days is None:
            days = 90 if self.archive_dsn is not None else 30
        return days * 86400

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> Settings:
        if self.recovery_seconds < self.claim_keep_seconds:
            raise ValueError(
                "WEBHOOKS_RECOVERY_SECONDS must exceed WEBHOOKS_TIMEOUT_SECONDS by "
                "at least 1 s, or live attempts would be run twice"
            )
        return self

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _known_redis_scheme(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if info.field_name == "redis_url" and scheme not in _REDIS_SCHEMES:
            known = ", ".join(f"{known}://" for known in _REDIS_SCHEMES)
            raise ValueError(f"must start with one of {known}, not {scheme or value!r}")
        if scheme == "sentinel":
            SentinelURL.parse(value)
        return value

    @property
    def broker(self) -> str:
        """The Celery broker's URL: WEBHOOKS_BROKER_URL, else the store's Redis."""
        return self.broker_url or self.redis_url

    @property
    def native_delays(self) -> bool:
        """Whether the broker is RabbitMQ, whose quorum queues hold retries until due."""
        return urlsplit(self.broker).scheme in ("amqp", "amqps", "pyamqp")

    @property
    def sentinel(self) -> SentinelURL | None:
        """The store's Sentinel setup, when WEBHOOKS_REDIS_URL is a ``sentinel://`` URL."""
        if urlsplit(self.redis_url).scheme != "sentinel":
            return None
        return SentinelURL.parse(self.redis_url)

    @field_validator("portal_frame_ancestors")
    @classmethod
    def _frame_ancestors_are_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_frame_ancestor(origin, n, len(value)) for n, origin in enumerate(value, 1))

    @field_validator("portal_brand_name")
    @classmethod
    def _brand_name_is_short(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > _MAX_BRAND_NAME or not value.isprintable()):
            raise ValueError(f"must be at most {_MAX_BRAND_NAME} printable characters")
        return value

    @field_validator("portal_brand_logo_url")
    @classmethod
    def _brand_logo_is_https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        origin = origin_of(value)
        if (
            origin is None
            or not origin.startswith("https://")
            or len(value) > _MAX_BRAND_URL
            or not re.fullmatch(r"[!-~]+", value)
        ):
            raise ValueError(
                f"must be an https:// URL of at most {_MAX_BRAND_URL} characters, with a "
                "host name and no credentials or spaces"
            )
        return value

    @field_validator("portal_brand_accent_color")
    @classmethod
    def _accent_is_hex(cls, value: str | None) -> str | None:
        if value is not None and not _COLOR.fullmatch(value):
            raise ValueError("must be a colour written #rrggbb, such as #0a7cff")
        return value.lower() if value is not None else None

    @field_validator(
        "portal_brand_name",
        "portal_brand_logo_url",
        "portal_brand_accent_color",
        "outbox_dsn",
        "archive_dsn",
        "operational_url",
        "operational_secret",
        "broker_url",
        "encryption_keys",
        "egress_proxy",
        "destination_admission_margin",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("archive_dsn")
    @classmethod
    def _archive_is_postgresql(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_archive_dsn(value.get_secret_value())
        return value

    @field_validator("egress_proxy")
    @classmethod
    def _egress_proxy_is_http(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            EgressProxy.parse(value.get_secret_value())
        return value

    @property
    def egress(self) -> EgressProxy | None:
        """WEBHOOKS_EGRESS_PROXY, read; None when attempts connect directly."""
        if self.egress_proxy is None:
            return None
        return EgressProxy.parse(self.egress_proxy.get_secret_value())

    @property
    def encryption_key_list(self) -> list[str]:
        """WEBHOOKS_ENCRYPTION_KEYS, one key an item, the one that encrypts first; empty
        when unset."""
        if self.encryption_keys is None:
            return []
        keys: list[str] = _comma_separated(self.encryption_keys.get_secret_value())
        return keys

    @field_validator("encryption_keys")
    @classmethod
    def _encryption_keys_are_fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        keys: list[str] = _comma_separated(value.get_secret_value())
        if not keys:
            raise ValueError("WEBHOOKS_ENCRYPTION_KEYS names no key: unset it, or give one")
        for number, key in enumerate(keys, 1):
            try:
                Fernet(key)
            except (ValueError, TypeError):
                # Which key by its place in the list: the key itself is never repeated.
                raise ValueError(
                    f"key {number} of {len(keys)} in WEBHOOKS_ENCRYPTION_KEYS is not the "
                    "URL-safe base64 of 32 bytes (generate one with Fernet.generate_key())"
                ) from None
        return value

    @model_validator(mode="after")
    def _operational_webhooks_are_signed(self) -> Settings:
        if self.operational_url and self.operational_secret is None:
            raise ValueError(
                "WEBHOOKS_OPERATIONAL_URL needs WEBHOOKS_OPERATIONAL_SECRET (a "
                "whsec_ secret, as `webhooks endpoints add` prints), to sign them"
            )
        if self.operational_secret is not None:
            value = self.operational_secret.get_secret_value()
            try:
                standardwebhooks.Webhook(value)
                valid = value.startswith("whsec_")
            except Exception:
                valid = False
            if not valid:
                raise ValueError(
                    "WEBHOOKS_OPERATIONAL_SECRET must be a whsec_ secret: whsec_ "
                    "and base64 of 24 to 64 random bytes"
                )
        return self


def bad_setting(exc: ValidationError) -> str:
    """A bad WEBHOOKS_* setting as one line naming it, not pydantic's traceback: what
    the command line and the worker say before they refuse to start."""
    error = exc.errors()[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["loc"]:
        message = f"{_setting_names(str(error['loc'][0]))}: {message}"
    return message


def _setting_names(name: str) -> str:
    """The environment variable a setting's error names, as the operator may have set
    it: pydantic names a setting read under two names by the first, whichever was set."""
    for info in Settings.model_fields.values():
        choices = info.validation_alias
        if isinstance(choices, AliasChoices) and name in choices.choices:
            first, *others = (str(choice) for choice in choices.choices)
            return f"{first} (or {', '.join(others)})"
    return f"WEBHOOKS_{name.upper()}"
