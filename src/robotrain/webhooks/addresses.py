"""Where a webhook may be sent: the URL's rules and the address check, applied at registration and again at every
delivery (a name that resolved to a public address once may resolve to a private one later). Delivery connects to
the address that was checked, never to a fresh lookup of the name."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from robotrain.webhooks.errors import WebhookUrlRefused

MAX_URL_LENGTH = 2048
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`address`, `port`) and what to ask for (`host` for Host and TLS)."""

    url: str
    scheme: str
    host: str
    port: int
    address: str
    path: str  # path and query, at least "/"

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the name."""
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{literal}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def is_public(address: IpAddress) -> bool:
    """Globally routable unicast: not private, loopback, link-local, unspecified, multicast or reserved (an IPv6
    address that maps or embeds an IPv4 one is judged by that)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return is_public(embedded)
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or not address.is_global
    )


def check_url(url: str, *, allow_private: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable URL, or WebhookUrlRefused saying why not."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookUrlRefused(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise WebhookUrlRefused("the URL must start with https://")
    if scheme == "http" and not allow_private:
        raise WebhookUrlRefused("the URL must use https")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("the URL must not carry credentials")
    if not parts.hostname:
        raise WebhookUrlRefused("the URL has no host")
    if parts.fragment:
        raise WebhookUrlRefused("the URL must not have a fragment")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def resolve(url: str, *, allow_private: bool) -> Target:
    """Check the URL and resolve its host; the first acceptable address is the one to connect to. Refused when the
    name does not resolve, or (unless `allow_private`) when any of its addresses is not public: a name that mixes
    public and private addresses is a rebinding attempt or a mistake either way."""
    scheme, host, port, path = check_url(url, allow_private=allow_private)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookUrlRefused(f"the host {host!r} does not resolve: {exc}") from None
    addresses: list[IpAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise WebhookUrlRefused(f"the host {host!r} does not resolve")
    if not allow_private:
        refused = [str(a) for a in addresses if not is_public(a)]
        if refused:
            raise WebhookUrlRefused(
                f"the host {host!r} resolves to a private, loopback, link-local or reserved address "
                f"({', '.join(refused)}); webhooks go to public addresses only"
            )
    elif scheme == "http" and any(is_public(a) for a in addresses):
        raise WebhookUrlRefused("plain http is accepted only for private addresses; use https")
    return Target(url=url, scheme=scheme, host=host, port=port, address=str(addresses[0]), path=path)
