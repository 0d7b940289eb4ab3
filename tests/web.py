"""A client for the ``webhooks serve`` process the tests start: requests with a token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests


@dataclass
class Web:
    """The server's base URL and the operator's token; ``call`` sends one request."""

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
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        session: requests.Session | None = None,
    ) -> requests.Response:
        """``token``: "operator", a portal token, or None for no Authorization header."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = "Bearer " + (
                self.operator_token if token == "operator" else token
            )
        return (session or requests).request(
            method, self.base + path, json=json, data=data, headers=sent, timeout=30
        )
