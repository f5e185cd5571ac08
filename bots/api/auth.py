"""Who is calling, and whether they may call now: the `Authorization: Bearer <key>` check and the rate limits,
as one middleware in front of every `/v1` route except the public ones (`PUBLIC_PATHS`).

Order: the key is looked up (401 `missing_key`, `invalid_key` or `key_revoked`), then one token is taken from
the key's bucket and the client address's bucket together (429 `rate_limited`). A request with a bad key takes
a token from its address's bucket only, so guessing keys is rate limited too. The client address is the TCP
peer's (`request.remote`); behind a proxy, configure aiohttp's forwarded handling there.
"""

from __future__ import annotations

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
    buckets = [Bucket(bucket_key("addr", request.remote or "-"), limits.address_rate, limits.address_burst)]
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


async def add_rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every answer (streams and errors too) carries the request's RateLimit headers."""
    for name, value in request.get(RATE_HEADERS, {}).items():
        response.headers.setdefault(name, value)
