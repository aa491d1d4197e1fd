"""Origins: what registry credentials belong to (scheme, host, port), read from a configured
registry URL, which must be `http(s)://host[:port]` and nothing else, or from any URL a
registry or token server names (a realm, where a redirect led).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import NamedTuple

from ..errors import TarexportError

DEFAULT_PORTS = {"http": 80, "https": 443}
HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)  # a DNS name or an IPv4 address
# the port of a netloc as written: urlsplit's own takes any Unicode digit ("h:٣" is port 3)
NETLOC_PORT = re.compile(r"(?:.*@)?(?:\[[^\]]*\]|[^:\[\]]*)(?::([0-9]*))?", re.ASCII)


class Origin(NamedTuple):
    """What credentials belong to: scheme, host (lower case) and port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str) -> Origin | None:
    """The origin of an absolute http(s) URL (a realm, where a redirect led); None when it
    is not one or its host could not be named in a message."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # unbalanced IPv6 brackets
        return None
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    port = NETLOC_PORT.fullmatch(parts.netloc)
    if scheme not in DEFAULT_PORTS or not port or not (HOST_NAME.fullmatch(host) or _ipv6(host)):
        return None
    number = int(port.group(1)) if port.group(1) else DEFAULT_PORTS[scheme]
    return Origin(scheme, _host_key(host), number) if 0 < number < 65536 else None


def _ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _host_key(host: str) -> str:
    """A host as origins compare it: lower case, an IPv6 address in its one short form."""
    return str(ipaddress.IPv6Address(host)) if _ipv6(host) else host.lower()


def shown_url(url: str) -> str:
    """A configured registry URL fit for a message: printable, short, without user info."""
    scheme, separator, rest = url.partition("://")
    if "@" in rest:
        url = f"{scheme}{separator}...@{rest.rpartition('@')[2]}"
    if not (url.isascii() and url.isprintable()):
        url = ascii(url)
    return url if len(url) <= 100 else url[:99] + "..."


def registry_origin(url: str) -> Origin:
    """The origin of a configured registry URL, which is `http(s)://host[:port]` and nothing
    else; anything else is refused in one line naming it."""

    def refuse(why: str) -> TarexportError:
        return TarexportError(f"registry url {why}", source=shown_url(url))

    scheme, separator, rest = url.partition("://")
    if scheme not in DEFAULT_PORTS or not separator:
        raise refuse("is not http://host[:port] or https://host[:port]")
    if "@" in rest:
        raise refuse("holds a user name or password: name their environment variables in username_env/password_env")
    if not (rest.isascii() and rest.isprintable()) or any(char in rest for char in " /?#\\"):
        raise refuse("is not http(s)://host[:port]: no path, query, spaces or non-ASCII characters")
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise refuse("has an IPv6 address without its closing ']'")
        if not _ipv6(host):
            raise refuse("has something between [ and ] that is not an IPv6 address")
        if after and not after.startswith(":"):
            raise refuse("has something other than :port after its IPv6 address")
        colon, port = after[:1], after[1:]
    else:
        host, colon, port = rest.partition(":")
        if not host:
            raise refuse("names no host")
        if not HOST_NAME.fullmatch(host):
            raise refuse("has a host that is neither a DNS name nor an IP address (an IPv6 one goes in [ ])")
    if colon and not (re.fullmatch(r"[0-9]{1,5}", port, re.ASCII) and 0 < int(port) < 65536):
        raise refuse("has a port that is not a number from 1 to 65535")
    return Origin(scheme, _host_key(host), int(port) if port else DEFAULT_PORTS[scheme])
