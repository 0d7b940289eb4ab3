"""Standard Webhooks v1 signatures: secrets, signing each attempt, verifying on the receiver.

The HMAC itself is the ``standardwebhooks`` package's; this module decides which
secrets sign and turns its errors into ours.
"""

from __future__ import annotations

import base64
import secrets as random_bytes
from collections.abc import Iterable, Mapping
from typing import Any

import standardwebhooks

from .clock import at
from .errors import WebhookVerificationFailed

__all__ = ["SECRET_PREFIX", "mask", "new_secret", "signature_header", "verify"]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec allows 24 to 64


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_bytes.token_bytes(SECRET_BYTES)).decode()


def mask(secret: str) -> str:
    """Enough of a secret to tell two apart in a listing, not enough to use it."""
    return secret[: len(SECRET_PREFIX) + 4] + "…"


def signature_header(webhook_id: str, timestamp: int, body: bytes, secrets: Iterable[str]) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per secret, space-separated."""
    moment = at(timestamp)
    text = body.decode()
    return " ".join(
        standardwebhooks.Webhook(secret).sign(webhook_id, moment, text) for secret in secrets
    )


def verify(body: bytes | str, headers: Mapping[str, str], secret: str) -> Any:
    """Check a received webhook and return its parsed JSON body.

    Raises :class:`WebhookVerificationFailed` when a header is missing, the
    timestamp is more than 5 minutes from now, or no signature matches ``secret``
    over the exact body received.
    """
    try:
        webhook = standardwebhooks.Webhook(secret)
    except Exception:
        raise WebhookVerificationFailed("the secret is not a valid whsec_ secret") from None
    try:
        return webhook.verify(body, dict(headers))
    except standardwebhooks.WebhookVerificationError as exc:
        raise WebhookVerificationFailed(str(exc)) from None
    except (ValueError, TypeError, UnicodeDecodeError):
        # A malformed signature list or body: the package raises these raw.
        raise WebhookVerificationFailed("malformed webhook headers or body") from None
