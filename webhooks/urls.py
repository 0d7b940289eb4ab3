"""The rules a destination URL must pass before anything is enqueued."""

from __future__ import annotations

from urllib.parse import urlsplit

from .errors import InvalidURL

__all__ = ["MAX_URL_LENGTH", "check_url"]

MAX_URL_LENGTH = 2048


def check_url(url: object) -> str:
    """Return ``url`` unchanged if it is an absolute http(s) URL we can POST to."""
    if not isinstance(url, str):
        raise InvalidURL(f"must be a string, not {type(url).__name__}")
    if not url:
        raise InvalidURL("must not be empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"is {len(url)} characters long; the limit is {MAX_URL_LENGTH}")
    if any(char.isspace() or ord(char) < 32 for char in url):
        raise InvalidURL("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise InvalidURL(f"cannot be parsed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidURL(f"scheme must be http or https, not {parts.scheme or 'missing'!r}")
    if not parts.hostname:
        raise InvalidURL("has no host")
    return url
