"""Endpoints' signing secrets and header values encrypted at rest, under
``WEBHOOKS_ENCRYPTION_KEYS``.

Each value is encrypted on its own with Fernet (AES-128-CBC and HMAC-SHA256:
authenticated, so a token altered in Redis is refused, never decrypted to
something else) and stored as :data:`~webhooks.models.SEALED_PREFIX` and the
token. The rest of the endpoint record stays readable, since the scripts that
claim attempts read its ``enabled``.

The first key encrypts; every key decrypts (MultiFernet), so a key is rotated by
putting a new one first, running ``webhooks secrets reencrypt``, then dropping the
old one. Without keys, values are written in clear, as before the setting existed;
values read are taken in either form.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from enum import StrEnum

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ..models import SEALED_PREFIX, Endpoint
from ..settings import Settings

__all__ = ["UNENCRYPTED", "Cipher", "Resealed", "warn_if_unencrypted"]

#: The one line workers and ``webhooks serve`` log at start without keys.
UNENCRYPTED = (
    "WEBHOOKS_ENCRYPTION_KEYS is not set: endpoints' signing secrets and header values "
    "are stored in clear in Redis, and so in its AOF files, snapshots and backups"
)


def warn_if_unencrypted(settings: Settings, logger: logging.Logger) -> None:
    """Log :data:`UNENCRYPTED` once, at a process's start, when there are no keys."""
    if settings.encryption_keys is None:
        logger.warning(UNENCRYPTED)


class Resealed(StrEnum):
    """What ``webhooks secrets reencrypt`` found a value to be."""

    ENCRYPTED = "encrypted"  # in clear, now encrypted under the first key
    REENCRYPTED = "reencrypted"  # under another key, now under the first
    CURRENT = "current"  # under the first key already: left as it was
    UNREADABLE = "unreadable"  # no key decrypts it: left as it was


class Cipher:
    """Encrypts and decrypts stored values under the keys given (none: in clear)."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        fernets = [Fernet(key) for key in keys]
        self._first = fernets[0] if fernets else None
        self._all = MultiFernet(fernets) if fernets else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Cipher:
        return cls(settings.encryption_key_list)

    @property
    def enabled(self) -> bool:
        return self._first is not None

    def seal(self, value: str) -> str:
        """``value`` as it is stored: encrypted under the first key; as it is without keys,
        or when it was never decrypted (so that an update keeps it as it was)."""
        if self._first is None or value.startswith(SEALED_PREFIX):
            return value
        return SEALED_PREFIX + self._first.encrypt(value.encode()).decode()

    def open(self, value: str) -> str:
        """``value`` in clear; a value no key decrypts is returned as it is, still
        sealed, which :meth:`Endpoint.unreadable` then tells."""
        if self._all is None or not value.startswith(SEALED_PREFIX):
            return value
        try:
            return self._all.decrypt(value.removeprefix(SEALED_PREFIX).encode()).decode()
        except InvalidToken:
            return value

    def reseal(self, value: str) -> tuple[str, Resealed]:
        """``value`` under the first key, and what it was (one no key decrypts is
        returned as it is). Needs keys."""
        if self._first is None or self._all is None:
            raise RuntimeError("resealing needs WEBHOOKS_ENCRYPTION_KEYS")
        if not value.startswith(SEALED_PREFIX):
            return self.seal(value), Resealed.ENCRYPTED
        token = value.removeprefix(SEALED_PREFIX).encode()
        try:
            self._first.decrypt(token)
            return value, Resealed.CURRENT
        except InvalidToken:
            pass
        try:
            return SEALED_PREFIX + self._all.rotate(token).decode(), Resealed.REENCRYPTED
        except InvalidToken:
            return value, Resealed.UNREADABLE

    def reseal_endpoint(self, endpoint: Endpoint) -> tuple[Endpoint, Counter[Resealed]]:
        """The endpoint with every value it can decrypt under the first key, and what
        each value was."""
        found: Counter[Resealed] = Counter()

        def reseal(value: str) -> str:
            resealed, was = self.reseal(value)
            found[was] += 1
            return resealed

        return _each_value(endpoint, reseal), found

    def open_endpoint(self, endpoint: Endpoint) -> Endpoint:
        return _each_value(endpoint, self.open)

    def seal_endpoint(self, endpoint: Endpoint) -> Endpoint:
        return _each_value(endpoint, self.seal)


def _each_value(endpoint: Endpoint, change: Callable[[str], str]) -> Endpoint:
    """The endpoint with ``change`` applied to each secret and header value."""
    secrets = [s.model_copy(update={"value": change(s.value)}) for s in endpoint.secrets]
    headers = {name: change(value) for name, value in endpoint.headers.items()}
    return endpoint.model_copy(update={"secrets": secrets, "headers": headers})
