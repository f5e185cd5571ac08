"""The web gallery (issue 13): each Discord server's or Slack workspace's images, for its own members, served by
`atelier api` under `/gallery/`.

- Sign-in is the platform's own OAuth (`oauth`, `auth`): Discord with the scopes `identify guilds`, Slack with
  Sign in with Slack. A member sees the galleries of the guilds they are in that use Atelier, or of the
  workspace they signed in to; nobody else's (404, as for what does not exist). Sessions live in Redis
  (`sessions`), so any number of API processes share them.
- A gallery lists the tenant's images newest first, with prompt search, filters and pages (`listing`); an image
  page shows its prompt and settings with "same again", which submits the same spec as a new job of the
  signed-in member through the same admission as a chat command; a job's page follows it live (`pages`).
- The safety filter is the tenant's, as in chat: flagged images are withheld, never served (`listing`).
- Server-rendered HTML (jinja2, autoescaped), one small script, no build step (`render`).

`add_routes(app)` mounts it on the API's app (`bots.api.app.ROUTE_MODULES`); `gallery_app(...)` builds it alone.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from arq.connections import ArqRedis

from atelier.settings import Settings
from bots.api.gallery import auth, pages, render
from bots.api.gallery.oauth import providers
from bots.api.gallery.services import GALLERY, GalleryServices, Submit
from storage.blobs import BlobStore

ROOT = "/gallery"

__all__ = ["ROOT", "add_routes", "gallery_app"]


def add_routes(app: web.Application) -> None:
    """Mount the gallery at `ROOT` on the API's app, on its clients and settings (none: no gallery).
    "Same again" submits through the API's own `submit_spec`, as a new job (never a cache hit)."""
    from bots.api.services import SERVICES
    from bots.api.submit import Built, api_target, submit_spec

    services = app[SERVICES]
    if services.settings is None:
        return

    async def submit(spec, tenant, user, request_id: str) -> str:
        built = Built(spec, cacheable=True)
        target = api_target(None, via="gallery")
        submitted = await submit_spec(
            services,
            built,
            tenant=tenant,
            user=user,
            reply_target=target,
            request_id=request_id,
            use_cache=False,
        )
        return submitted.job.id

    limits = services.limits
    gallery = gallery_app(
        services.settings,
        services.redis,
        services.blobs,
        submit,
        (limits.address_rate, limits.address_burst),
        limits.trusted_proxies,
    )
    app.router.add_get(ROOT, _to_index)  # before the sub-app, whose prefix would take it
    app.add_subapp(ROOT, gallery)


def gallery_app(
    settings: Settings,
    redis: ArqRedis,
    blobs: BlobStore,
    submit: Submit,
    sign_in_limit: tuple[float, int] | None = None,
    trusted_proxies: tuple = (),
) -> web.Application:
    """The gallery as an aiohttp sub-app, to be mounted at `ROOT`; `submit` enqueues "same again";
    `sign_in_limit` (per second, burst) bounds the sign-ins one client address may start (the address as the
    API reads it, through `trusted_proxies`)."""
    app = web.Application(middlewares=[render.security_headers, auth.session_member, pages.sign_in_first])
    app[GALLERY] = GalleryServices(
        settings,
        redis,
        blobs,
        submit,
        providers(settings),
        root=ROOT,
        sign_in_limit=sign_in_limit,
        trusted_proxies=trusted_proxies,
    )
    app.cleanup_ctx.append(_http_client)
    prefix = r"/{platform:discord|slack}/{tenant:[A-Za-z0-9]{1,64}}"
    app.router.add_get("/", pages.index)
    app.router.add_get("/static/{name}", render.static)
    app.router.add_get("/signin/{platform}", auth.sign_in)
    app.router.add_get("/callback/{platform}", auth.callback)
    app.router.add_post("/signout", auth.sign_out)
    app.router.add_get(prefix, pages.gallery)
    app.router.add_get(prefix + "/images/{image}", pages.image_page)
    app.router.add_get(prefix + "/images/{image}/file", pages.image_file)
    app.router.add_get(prefix + "/images/{image}/thumb", pages.image_thumb)
    app.router.add_get(prefix + "/jobs/{job}", pages.job_page)
    app.router.add_get(prefix + "/jobs/{job}/events", pages.job_events)
    app.router.add_get(prefix + "/jobs/{job}/preview", pages.job_preview)
    app.router.add_post(prefix + "/jobs/{job}/again", pages.again)
    return app


async def _to_index(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently(f"{ROOT}/")


async def _http_client(app: web.Application):
    services = app[GALLERY]
    services.http = aiohttp.ClientSession()
    yield
    await services.http.close()
