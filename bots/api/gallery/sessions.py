"""Gallery sessions in Redis, so every `atelier api` process behind a load balancer shares them.

A session is created at sign-in: a random id (32 bytes, URL-safe) goes to the browser in an HttpOnly,
SameSite=Lax cookie; Redis holds what the platform told us about the member under the id's SHA-256 (a copy of
Redis's keys is then no set of working cookies). It holds the member's platform and user id, name, the tenants
(guilds or the workspace) they belonged to at sign-in, and the session's CSRF token, which every POST form
carries. Membership is as of sign-in: a member who leaves a guild loses its gallery when the session ends
(`SESSION_TTL_S`) or at sign-out, whichever comes first.

OAuth's `state` is a second, short-lived record: one random value in a cookie of its own and as the key of a
Redis entry that can be taken once, so a callback is accepted only in the browser that started the sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass, field

from redis.asyncio import Redis

SESSION_COOKIE = "atelier_session"
STATE_COOKIE = "atelier_oauth_state"
SESSION_TTL_S = 12 * 3600
STATE_TTL_S = 10 * 60
_SESSION_KEY = "atelier:gallery:session:"
_STATE_KEY = "atelier:gallery:oauth-state:"


@dataclass(frozen=True)
class Member:
    """Who signed in, as their platform told us: `tenants` are the external ids (guilds, the workspace)."""

    platform: str
    user_id: str
    name: str
    tenants: tuple[str, ...]
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def belongs_to(self, platform: str, external_id: str) -> bool:
        return platform == self.platform and external_id in self.tenants

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), self.csrf.encode())


def _key(prefix: str, secret: str) -> str:
    return prefix + hashlib.sha256(secret.encode()).hexdigest()


class Sessions:
    """Create, read and end sessions; begin and take OAuth states."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def create(self, member: Member) -> str:
        """Store `member` under a new random id and return the id (the cookie's value)."""
        session_id = secrets.token_urlsafe(32)
        data = asdict(member) | {"tenants": list(member.tenants)}
        await self._redis.set(_key(_SESSION_KEY, session_id), json.dumps(data), ex=SESSION_TTL_S)
        return session_id

    async def get(self, session_id: str | None) -> Member | None:
        if not session_id or len(session_id) > 128:
            return None
        raw = await self._redis.get(_key(_SESSION_KEY, session_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return Member(**{**data, "tenants": tuple(data["tenants"])})

    async def end(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 128:
            await self._redis.delete(_key(_SESSION_KEY, session_id))

    async def begin_sign_in(self, provider: str) -> str:
        """A new OAuth `state` for `provider`: the browser gets it as a cookie and the provider as a parameter."""
        state = secrets.token_urlsafe(32)
        await self._redis.set(_key(_STATE_KEY, state), provider, ex=STATE_TTL_S)
        return state

    async def take_state(self, provider: str, state: str | None, cookie: str | None) -> bool:
        """Whether `state` is the one this browser's sign-in with `provider` began (usable once)."""
        if (
            not state
            or not cookie
            or len(state) > 128
            or not hmac.compare_digest(state.encode(), cookie.encode())
        ):
            return False
        stored = await self._redis.getdel(_key(_STATE_KEY, state))
        return stored is not None and (stored.decode() if isinstance(stored, bytes) else stored) == provider
