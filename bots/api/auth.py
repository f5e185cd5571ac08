"""Who is calling, and whether they may call now: the `Authorization: Bearer <key>` check and the rate limits,
as one middleware in front of every `/v1` route except the public ones (`PUBLIC_PATHS`).

Order: the key is looked up (401 `missing_key`, `invalid_key` or `key_revoked`), then one token is taken from
the key's bucket and the client address's bucket together (429 `rate_limited`). A request with a bad key takes
a token from its address's bucket only, so guessing keys is rate limited too. The client address is the TCP
peer's, or behind a trusted reverse proxy (ATELIER_API_TRUSTED_PROXIES) the one it forwarded (`client_address`).
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from bots.api.errors import ApiError
from bots.api.keys import KeyRefused, authenticate
from bots.api.ratelimit import Bucket, bucket_key, take
from bots.api.services import CALLER, Caller, services_of

PUBLIC_PATHS: web.AppKey[set[str]] = web.AppKey("atelier_api_public_paths", set)
RATE_HEADERS = web.RequestKey("atelier_api_rate_headers", dict)  # the RateLimit headers for the response


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/") or request.path in request.app[PUBLIC_PATHS]:
        return await handler(request)
    services = services_of(request)
    limits = services.limits
    address = client_address(request, limits.trusted_proxies)
    buckets = [Bucket(bucket_key("addr", address), limits.address_rate, limits.address_burst)]
    refusal: ApiError | None = None
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        refusal = ApiError(401, "missing_key", "send your API key as `Authorization: Bearer <key>`")
    elif scheme.lower() != "bearer" or not key.strip():
        refusal = ApiError(401, "invalid_key", "the Authorization header must be `Bearer <key>`")
    else:
        try:
            record = await authenticate(key.strip())
        except KeyRefused as exc:
            refusal = ApiError(401, exc.code, str(exc))
        else:
            request[CALLER] = Caller(record, record.tenant)
            buckets.append(Bucket(bucket_key("key", str(record.id)), limits.key_rate, limits.key_burst))
    verdict = await take(services.redis, buckets)
    request[RATE_HEADERS] = verdict.headers()
    if not verdict.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests: try again in {verdict.retry_after_s} s",
            headers=verdict.headers(),
        )
    if refusal is not None:
        refusal.headers["WWW-Authenticate"] = 'Bearer realm="atelier"'
        raise refusal
    return await handler(request)


def client_address(request: web.Request, trusted: tuple = ()) -> str:
    """The client's address: the TCP peer's, or, when the peer is a trusted proxy, the nearest address in
    `X-Forwarded-For` (read from the right, each proxy appending its peer) that is not a trusted proxy itself.
    From anyone else the header is ignored: a client could write anything there."""
    peer = request.remote or "-"
    if not trusted or not _within(peer, trusted):
        return peer
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    for candidate in reversed(forwarded):
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            return peer  # a malformed chain: count it against the proxy rather than trust it
        if not _within(str(address), trusted):
            return str(address)
    return peer


def _within(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


async def add_rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every answer (streams and errors too) carries the request's RateLimit headers."""
    for name, value in request.get(RATE_HEADERS, {}).items():
        response.headers.setdefault(name, value)
