"""The SSRF guard: which destinations a delivery may reach.

A webhook sender fetches URLs that customers choose, so without this guard it
is a tool for reaching internal services. It works in two places:

- **At the door** (:func:`check_url`): ``deliver.delay``, ``publish`` and
  ``endpoints add`` refuse what the URL itself shows to be unsendable or internal.
- **On every attempt** (:func:`resolve`): every address the host resolves to is
  checked, and :mod:`webhooks.sending.transport` connects to the address that was
  checked, so DNS rebinding cannot slip through.

``WEBHOOKS_ALLOWED_NETWORKS`` lets self-hosters reach chosen networks on purpose.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import urllib3.exceptions
import urllib3.util

from .errors import BlockedDestination, InvalidURL
from .settings import Settings

__all__ = [
    "MAX_URL_LENGTH",
    "IPAddress",
    "IPNetwork",
    "blocked_reason",
    "check_address",
    "check_url",
    "literal_ip",
    "resolve",
]

MAX_URL_LENGTH = 2048
_LOOPBACK_NAMES = ("localhost", "localhost.")
#: What a host may be made of once percent-decoded: letters of any script (IDNA comes
#: next), digits, dots, hyphens, and the colons of an IPv6 address.
_HOST_CHARS = re.compile(r"[\w.:-]+")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_net = ipaddress.ip_network
# Named here because Python's is_global/is_private miss some of them in older
# 3.11 releases (cpython#113171), and a guard must not depend on the patch level.
_NAMED: tuple[tuple[IPNetwork, str], ...] = (
    (_net("0.0.0.0/8"), "unspecified"),
    (_net("10.0.0.0/8"), "private"),
    (_net("100.64.0.0/10"), "carrier-grade NAT"),
    (_net("127.0.0.0/8"), "loopback"),
    (_net("169.254.0.0/16"), "link-local"),
    (_net("172.16.0.0/12"), "private"),
    (_net("192.0.0.0/24"), "IETF protocol assignments"),
    (_net("192.0.2.0/24"), "documentation"),
    (_net("192.88.99.0/24"), "6to4 relay anycast"),
    (_net("192.168.0.0/16"), "private"),
    (_net("198.18.0.0/15"), "benchmarking"),
    (_net("198.51.100.0/24"), "documentation"),
    (_net("203.0.113.0/24"), "documentation"),
    (_net("224.0.0.0/4"), "multicast"),
    (_net("240.0.0.0/4"), "reserved"),
    (_net("::/128"), "unspecified"),
    (_net("::1/128"), "loopback"),
    (_net("::/96"), "IPv4-compatible"),
    (_net("64:ff9b:1::/48"), "local NAT64"),
    (_net("100::/64"), "discard"),
    (_net("2001::/23"), "IETF protocol assignments"),
    (_net("2001:db8::/32"), "documentation"),
    (_net("3fff::/20"), "documentation"),
    (_net("5f00::/16"), "segment routing"),
    (_net("fc00::/7"), "unique local"),
    (_net("fe80::/10"), "link-local"),
    (_net("fec0::/10"), "site-local"),
    (_net("ff00::/8"), "multicast"),
)
_SIX_TO_FOUR = _net("2002::/16")
_NAT64 = _net("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 form carries: mapped, 6to4 or NAT64."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _SIX_TO_FOUR:
        return ipaddress.IPv4Address(int(ip) >> 80 & 0xFFFFFFFF), "6to4"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is no place for a webhook (e.g. ``"loopback"``), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(ip)):
        inner, form = embedded
        reason = blocked_reason(inner)
        return f"{form} form of a {reason}" if reason else None
    for network, name in _NAMED:
        if ip in network:
            return name
    if ip.is_multicast:
        return "multicast"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "not globally routable"
    return None


def _normalise(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def check_address(ip: IPAddress, allowed: Sequence[IPNetwork], host: str) -> None:
    """Raise BlockedDestination unless ``ip`` is public or inside an allowed network."""
    reason = _refusal(ip, tuple(allowed))
    if reason is not None:
        shown = host if host == str(ip) else f"{host} ({ip})"
        raise BlockedDestination(
            f"{shown} is a {reason} address; refused (WEBHOOKS_ALLOWED_NETWORKS can allow it)"
        )


# The two checks made of every attempt's host, kept for the hosts and addresses seen
# last: both are pure, and together they took a twentieth of an attempt's CPU
# (py-spy), most of it in the exceptions a host name raises on its way to None.


@functools.lru_cache(maxsize=4096)
def _refusal(ip: IPAddress, allowed: tuple[IPNetwork, ...]) -> str | None:
    """Why ``ip`` is refused under ``allowed`` (see :func:`blocked_reason`), or None."""
    if any(_normalise(ip) in network for network in allowed):
        return None
    return blocked_reason(ip)


@functools.lru_cache(maxsize=4096)
def literal_ip(host: str) -> IPAddress | None:
    """The address a host spells directly, in any form the C resolver accepts:
    ``127.0.0.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``::1``."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def resolve(host: str, port: int, allowed: Sequence[IPNetwork]) -> IPAddress:
    """Resolve ``host`` and check every address it has; return the one to connect to.

    One forbidden address refuses the whole host: a name that mixes public and
    internal addresses is an attack or a mistake, and either way not ours to try.
    """
    # An address written out is its own and only address: the resolver, asked on
    # every attempt, is not asked for it.
    literal = literal_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for ip in addresses:
        check_address(ip, allowed, host)
    return addresses[0]


def check_url(url: object, settings: Settings) -> str:
    """The URL deliveries to ``url`` are sent to, or :class:`~webhooks.InvalidURL`,
    under ``settings``' rules (https only, the networks allowed).

    That is ``url`` itself, but for an internationalised host, which becomes the
    ASCII form the worker's HTTP stack sends to (urllib3's IDNA 2008 encoding):
    ``bücher.example`` is ``xn--bcher-kva.example``. A host that stack could
    never send to (``☃.net``, or fullwidth digits that only look like an
    address) is refused here rather than failing every attempt for a day. This
    catches what can be seen in the URL itself; :func:`resolve` checks what the
    host resolves to, on every attempt.
    """
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
        port = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise InvalidURL(f"cannot be parsed: {exc}") from None
    allowed_schemes = ("https",) if settings.https_only else ("http", "https")
    if parts.scheme not in allowed_schemes:
        raise InvalidURL(
            f"scheme must be {' or '.join(allowed_schemes)}, not {parts.scheme or 'missing'!r}"
        )
    if "@" in parts.netloc:
        # Credentials in a URL end up in logs, Flower and error messages.
        raise InvalidURL("must not contain a user name or password")
    host = parts.hostname
    if not host:
        raise InvalidURL("has no host")
    if port == 0:
        raise InvalidURL("port 0 cannot be connected to")
    given = host
    if "%" in host:
        # HTTP stacks decode a percent-encoded host before resolving it
        # (%31%32%37.0.0.1 is 127.0.0.1), so the checks below see it decoded.
        try:
            host = unquote(host, errors="strict").lower()
        except UnicodeDecodeError:
            raise InvalidURL("host is not a valid host name once percent-decoded") from None
        if not _HOST_CHARS.fullmatch(host):
            raise InvalidURL("host is not a valid host name once percent-decoded")
    if not host.isascii():
        try:
            host = str(urllib3.util.parse_url(f"http://{host}/").host)
        except urllib3.exceptions.LocationParseError as exc:
            raise InvalidURL(
                f"host {host!r} can never be sent to: {exc} (hosts must be IDNA 2008 names)"
            ) from None
    if host != given:
        netloc = f"[{host}]" if ":" in host else host
        url = urlunsplit(parts._replace(netloc=netloc if port is None else f"{netloc}:{port}"))
    try:
        # What the worker's HTTP stack does with the URL before any attempt.
        requests.models.PreparedRequest().prepare_url(url, None)
    except (requests.RequestException, ValueError) as exc:
        raise InvalidURL(f"can never be sent to: {exc}") from None
    ip = literal_ip(host)
    if ip is None and (host in _LOOPBACK_NAMES or host.endswith(".localhost")):
        ip = literal_ip("127.0.0.1")  # RFC 6761: these names are always loopback
    if ip is not None:
        try:
            check_address(ip, settings.allowed_networks, host)
        except BlockedDestination as exc:
            raise InvalidURL(f"host {exc}") from None
    return url
