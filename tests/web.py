"""Clients for the API the tests call: a real ``webhooks serve`` process (:class:`Web`),
or the same application in this process (:class:`InProcess`, FastAPI's TestClient),
with one interface, so that a test body runs against either.

``call`` sends one request with a token; ``browser()`` is a client with its own
cookies (a browser signing in). What comes back has ``status_code``, ``headers``,
``text`` and ``json()`` either way.
"""

from __future__ import annotations

import json as json_module
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests
from fastapi.testclient import TestClient

from webhooks.system import System
from webhooks.web.app import create_app


class Answer(Protocol):
    """What ``call`` returns: a requests or an httpx response."""

    status_code: int

    @property
    def headers(self) -> Any: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def _headers(
    web: Web | InProcess, token: str | None, headers: dict[str, str] | None
) -> dict[str, str]:
    """``token``: "operator", a portal token, or None for no Authorization header."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = "Bearer " + (web.operator_token if token == "operator" else token)
    return sent


@dataclass
class Web:
    """A server process: its base URL, the operator's token and its log."""

    base: str
    operator_token: str
    log: Path

    def call(
        self,
        method: str,
        path: str,
        token: str | None = "operator",
        *,
        json: Any = None,
        data: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        session: Any = None,
    ) -> Answer:
        sent = _headers(self, token, headers)
        return (session or requests).request(
            method, self.base + path, json=json, data=data, headers=sent, timeout=30
        )

    def browser(self) -> requests.Session:
        return requests.Session()


@dataclass
class InProcess:
    """The application ``webhooks serve`` runs, called in this process on ``system``."""

    system: System
    operator_token: str
    base: str = "http://testserver"
    _client: TestClient = field(init=False)

    def __post_init__(self) -> None:
        self._client = self.browser()

    def call(
        self,
        method: str,
        path: str,
        token: str | None = "operator",
        *,
        json: Any = None,
        data: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        session: Any = None,
    ) -> Answer:
        sent = _headers(self, token, headers)
        content = data
        if json is not None:  # as requests sends it
            content = json_module.dumps(json).encode()
            sent.setdefault("Content-Type", "application/json")
        # ``session``: what browser() returned; Any, as in Web.call, so that a test body
        # written for either passes its browser back.
        client: TestClient = session or self._client
        if session is None:
            client.cookies.clear()  # no session but the one asked for, as with requests
        return client.request(method, path, content=content, headers=sent)

    def browser(self) -> TestClient:
        # Errors become answers (500s included), as a server's would.
        return TestClient(create_app(self.system), raise_server_exceptions=False)
