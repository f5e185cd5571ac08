"""What the API's handlers work with: the clients (built once by the composition root, `atelier.cli_api`) and,
per request, who is calling (set by the auth middleware)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from arq.connections import ArqRedis

from engine.registry import Registry
from quotas.tiers import Tiers
from storage.api_models import ApiKey
from storage.blobs import BlobStore
from storage.models import Tenant, User, get_or_create_user

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RateLimits:
    """Token buckets (`bots.api.ratelimit`): requests per second refilled, and the most that may be saved up."""

    key_rate: float = 5.0
    key_burst: int = 60
    address_rate: float = 10.0
    address_burst: int = 120
    trusted_proxies: tuple[
        IPNetwork, ...
    ] = ()  # whose X-Forwarded-For names the client (`auth.client_address`)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """`"10.0.0.0/8, 127.0.0.1"` → networks; ValueError naming an entry that is neither address nor network."""
    networks = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"not an address or network (CIDR): {part!r}") from None
    return tuple(networks)


@dataclass(frozen=True)
class ApiServices:
    redis: ArqRedis  # the arq queue, job event streams, cancel signals, rate limits, the result cache
    registry: Registry  # model presets, to validate requests before anything is enqueued
    blobs: BlobStore  # result images (served by GET /v1/images/{id}) and the input images people send
    queue_name: str
    tiers: Tiers = field(default_factory=Tiers)
    tiny_models: bool = False  # make every default model its tiny counterpart (tests, offline demo)
    loras_dir: Path | None = None  # the shared LoRA folder
    limits: RateLimits = field(default_factory=RateLimits)
    # The process's Settings, for route modules that need settings of their own (read-only).
    settings: Any = None


SERVICES = web.AppKey("atelier_api_services", ApiServices)


def services_of(request: web.Request) -> ApiServices:
    return request.app[SERVICES]


API_USER_PREFIX = "apikey:"


@dataclass
class Caller:
    """The authenticated key of a request and its tenant. Jobs are charged to the tenant and to the key's own
    user, `apikey:<key id>` (created on first use), so an admin can see, limit or ban one integration by that
    user id (`atelier admin ban discord:1234 apikey:7`) without touching the tenant's people."""

    key: ApiKey
    tenant: Tenant
    _user: User | None = None

    async def user(self) -> User:
        if self._user is None:
            self._user = await get_or_create_user(
                self.tenant, f"{API_USER_PREFIX}{self.key.id}", self.key.name
            )
        return self._user


CALLER = web.RequestKey("atelier_api_caller", Caller)  # on every authenticated route


def caller_of(request: web.Request) -> Caller:
    return request[CALLER]
