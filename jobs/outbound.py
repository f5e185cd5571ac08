"""Where Atelier may send requests to hosts that its users name (webhooks): the address rules, in one place.

A URL a client supplies is an SSRF risk: it can name an internal service (a database admin page, the cloud's
metadata endpoint at 169.254.169.254, Redis on loopback), directly or through a name that resolves there. Webhooks
go to arbitrary hosts, so the rule is about addresses, not names: http or https only, no credentials in the URL,
and every address the host resolves to must be public (not loopback, private, link-local, shared, multicast,
reserved or unspecified; an IPv4-mapped IPv6 address counts as its IPv4 one). The operator may allow internal
receivers: all of them (`ATELIER_WEBHOOK_ALLOW_PRIVATE`) or some hosts and networks
(`ATELIER_WEBHOOK_ALLOWED_HOSTS`, e.g. `hooks.internal,10.1.0.0/16`).

The check runs twice: when the URL is submitted (a clear refusal, nothing queued) and when each request is sent,
because DNS may have changed meanwhile. At send time `CheckedResolver` is the resolver of the HTTP client itself,
so the addresses connected to are exactly the ones checked (a second lookup could answer otherwise). Redirects
are never followed (the sender treats them as failures).

This lives in `jobs` so the front-ends (`bots`) and the senders (workers, API processes) share it; it imports
nothing of Atelier's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 5.0  # a submission waits this long at most for DNS


class OutboundRefused(ValueError):
    """A URL or address Atelier will not send to; the message can be shown to the client as it is and names no
    resolved address."""


@dataclass(frozen=True)
class OutboundRules:
    """Which internal receivers the operator allows: every one (`allow_private`), or these host names and
    networks (`hosts`, `networks`). Public addresses are always allowed."""

    allow_private: bool = False
    hosts: frozenset[str] = field(default_factory=frozenset)
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, allow_private: bool = False, allowed: Iterable[str] = ()) -> OutboundRules:
        """Rules from settings: `allowed` holds host names, addresses and networks in CIDR notation."""
        hosts, networks = set(), []
        for entry in (e.strip().lower().rstrip(".") for e in allowed):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(allow_private, frozenset(hosts), tuple(networks))

    def allows_address(self, host: str, address: IPAddress) -> bool:
        """Whether `address` (which `host` resolved to) may be connected to."""
        if self.allow_private or host.lower().rstrip(".") in self.hosts:
            return True
        if any(address in net for net in self.networks):
            return True
        return is_public(address)


def is_public(address: IPAddress) -> bool:
    """Whether `address` is a public unicast address (see the module's docstring)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_loopback or address.is_link_local
    )


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL that Atelier may send to, before any lookup; raises
    `OutboundRefused` with the reason."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise OutboundRefused(f"must be an http or https URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise OutboundRefused("must be an http or https URL")
    if not parts.hostname:
        raise OutboundRefused("has no host")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("must not carry credentials (user:password@)")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise OutboundRefused("must not contain spaces or control characters")
    return scheme, parts.hostname.lower().rstrip("."), port or DEFAULT_PORTS[scheme]


def literal_address(host: str) -> IPAddress | None:
    """The address `host` is written as (`127.0.0.1`, `::1`), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_address(host: str, address: str | IPAddress, rules: OutboundRules) -> None:
    """Raise `OutboundRefused` unless `address`, which `host` resolved to, is allowed by `rules`."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if not rules.allows_address(host, ip):
        raise OutboundRefused(
            "leads to an internal address (loopback, private, link-local or reserved), which webhooks may not "
            "reach unless the operator allows it"
        )


async def check_url(url: str, rules: OutboundRules) -> None:
    """Check `url` now, resolving its host: raises `OutboundRefused` if it is malformed, does not resolve, or
    any of its addresses is not allowed. What a front-end calls when a client submits the URL."""
    _scheme, host, port = split_url(url)
    literal = literal_address(host)
    if literal is not None:
        check_address(host, literal, rules)
        return
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, TimeoutError):
        raise OutboundRefused("names a host that does not resolve") from None
    if not infos:
        raise OutboundRefused("names a host that does not resolve")
    for *_, sockaddr in infos:
        check_address(host, sockaddr[0], rules)


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver that refuses a host when any address it resolves to is not allowed: the HTTP client
    then connects only to checked addresses. (aiohttp does not ask a resolver about address literals: check
    those with `check_address` before the request.)"""

    def __init__(self, rules: OutboundRules) -> None:
        self._rules = rules
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            check_address(host, result["host"], self._rules)
        return results

    async def close(self) -> None:
        await self._resolver.close()
