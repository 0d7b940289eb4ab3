"""The rules a destination URL must pass before anything is enqueued or registered.

These catch what can be seen in the URL itself; the guard in
:mod:`webhooks.transport` checks what the host resolves to, on every attempt.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .errors import BlockedDestination, InvalidURL
from .guard import check_address, literal_ip
from .settings import get_settings

__all__ = ["MAX_URL_LENGTH", "check_url"]

MAX_URL_LENGTH = 2048
_LOOPBACK_NAMES = ("localhost", "localhost.")


def check_url(url: object) -> str:
    """Return ``url`` unchanged if it is an absolute http(s) URL we may POST to."""
    if not isinstance(url, str):
        raise InvalidURL(f"must be a string, not {type(url).__name__}")
    if not url:
        raise InvalidURL("must not be empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"is {len(url)} characters long; the limit is {MAX_URL_LENGTH}")
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        raise InvalidURL("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise InvalidURL(f"cannot be parsed: {exc}") from None
    settings = get_settings()
    allowed_schemes = ("https",) if settings.https_only else ("http", "https")
    if parts.scheme not in allowed_schemes:
        raise InvalidURL(f"scheme must be {' or '.join(allowed_schemes)}, "
                         f"not {parts.scheme or 'missing'!r}")
    if "@" in parts.netloc:
        # Credentials in a URL end up in logs, Flower and error messages.
        raise InvalidURL("must not contain a user name or password")
    host = parts.hostname
    if not host:
        raise InvalidURL("has no host")
    ip = literal_ip(host)
    if ip is None and (host in _LOOPBACK_NAMES or host.endswith(".localhost")):
        ip = literal_ip("127.0.0.1")  # RFC 6761: these names are always loopback
    if ip is not None:
        try:
            check_address(ip, settings.allowed_networks, host)
        except BlockedDestination as exc:
            raise InvalidURL(f"host {exc}") from None
    return url
