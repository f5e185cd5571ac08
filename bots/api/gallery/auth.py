"""Sign-in and sign-out, and who is asking: the session middleware puts the signed-in `Member` (or None) on
every gallery request as `request[MEMBER]`.

`/signin/{platform}` begins the platform's OAuth flow with a fresh `state`, kept in a short-lived cookie of its
own (HttpOnly, SameSite=Lax) and in Redis; `/callback/{platform}` accepts the code only with that same state,
once, then asks the platform who the member is and which guilds or workspace they are in (`oauth`), and starts
a session (`sessions`). Sign-out is a POST with the session's CSRF token. A member signing in again gets a new
session id (no fixation); the old one ends.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bots.api.auth import client_address
from bots.api.gallery import render
from bots.api.gallery.oauth import SignInFailed
from bots.api.gallery.services import GALLERY, MEMBER, GalleryServices
from bots.api.gallery.sessions import SESSION_COOKIE, SESSION_TTL_S, STATE_COOKIE, STATE_TTL_S, Member
from bots.api.ratelimit import Bucket, bucket_key, take

log = logging.getLogger(__name__)


@web.middleware
async def session_member(request: web.Request, handler) -> web.StreamResponse:
    services = request.config_dict[GALLERY]
    request[MEMBER] = await services.sessions.get(request.cookies.get(SESSION_COOKIE))
    return await handler(request)


def redirect_uri(request: web.Request, platform: str) -> str:
    services: GalleryServices = request.config_dict[GALLERY]
    base = (services.settings.public_url or str(request.url.origin())).rstrip("/")
    return f"{base}{services.root}/callback/{platform}"


def _cookie_options(request: web.Request) -> dict:
    public = request.config_dict[GALLERY].settings.public_url or ""
    secure = public.startswith("https://") or request.secure
    return {"httponly": True, "samesite": "Lax", "secure": secure, "path": request.config_dict[GALLERY].root}


async def _too_many(request: web.Request) -> web.Response | None:
    """429 when this client address has started too many sign-ins (each one writes a state to Redis and calls
    the platform): the API's per-address rate, in a bucket of the gallery's own."""
    services: GalleryServices = request.config_dict[GALLERY]
    if services.sign_in_limit is None:
        return None
    rate, burst = services.sign_in_limit
    address = client_address(request, services.trusted_proxies)
    verdict = await take(services.redis, [Bucket(bucket_key("gallery-sign-in", address), rate, burst)])
    if verdict.allowed:
        return None
    wait = verdict.retry_after_s
    response = render.error(
        request, 429, "Too many sign-ins", f"Too many sign-ins from here; try again in {wait} s."
    )
    response.headers["Retry-After"] = str(wait)
    return response


async def sign_in(request: web.Request) -> web.StreamResponse:
    services: GalleryServices = request.config_dict[GALLERY]
    if refused := await _too_many(request):
        return refused
    provider = services.providers.get(request.match_info["platform"])
    if provider is None:
        return render.error(request, 404, "Not here", "This kind of sign-in is not set up on this server.")
    state = await services.sessions.begin_sign_in(provider.platform)
    response = render.redirect(provider.authorize_url(state, redirect_uri(request, provider.platform)), 302)
    response.set_cookie(STATE_COOKIE, state, max_age=STATE_TTL_S, **_cookie_options(request))
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    services: GalleryServices = request.config_dict[GALLERY]
    if refused := await _too_many(request):
        return refused
    platform = request.match_info["platform"]
    provider = services.providers.get(platform)
    if provider is None:
        return render.error(request, 404, "Not here", "This kind of sign-in is not set up on this server.")
    state_ok = await services.sessions.take_state(
        platform, request.query.get("state"), request.cookies.get(STATE_COOKIE)
    )
    if not state_ok:
        log.info("gallery sign-in with %s refused: the state did not match this browser's", platform)
        return render.error(
            request,
            400,
            "Sign-in not accepted",
            "This sign-in did not start here, or it expired. Please sign in again.",
        )
    code = request.query.get("code")
    if not code or len(code) > 512:
        why = request.query.get("error", "no code")[:60]
        log.info("gallery sign-in with %s ended without a code (%s)", platform, why)
        return render.error(
            request, 400, "Sign-in cancelled", f"{provider.label} did not sign you in. Please try again."
        )
    try:
        identity = await provider.identify(services.http, code, redirect_uri(request, platform))
    except SignInFailed as failure:
        return render.error(request, 502, "Sign-in failed", str(failure))
    await services.sessions.end(request.cookies.get(SESSION_COOKIE))
    member = Member(identity.platform, identity.user_id, identity.name, identity.tenants)
    session_id = await services.sessions.create(member)
    log.info("gallery sign-in: %s user %s", platform, identity.user_id)
    response = render.redirect(f"{services.root}/")
    options = _cookie_options(request)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=SESSION_TTL_S, **options)
    response.del_cookie(STATE_COOKIE, path=options["path"])
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    services: GalleryServices = request.config_dict[GALLERY]
    member: Member | None = request[MEMBER]
    form = await request.post()
    if member is not None:
        if not member.csrf_ok(form.get("csrf")):  # type: ignore[arg-type]
            return render.error(request, 403, "Not signed out", "This form is out of date; reload the page.")
        await services.sessions.end(request.cookies.get(SESSION_COOKIE))
    response = render.redirect(f"{services.root}/")
    response.del_cookie(SESSION_COOKIE, path=services.root)
    return response
