"""HTML for the gallery: jinja2 templates beside this file, autoescaped (every prompt, name and filter value a
member typed is text, never markup), and the headers every page carries.

Pages allow scripts, styles and images from this origin only (CSP), no framing, and no caching by proxies: a
page shows one member's galleries. The JavaScript is a static file, so the policy needs no 'unsafe-inline'.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import jinja2
from aiohttp import web

from bots.api.gallery.services import GALLERY, MEMBER

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
STATIC = {"gallery.js": "text/javascript", "gallery.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def page(request: web.Request, template: str, *, status: int = 200, **context: object) -> web.Response:
    """`template` rendered for this request (`root` is the gallery's path prefix, `member` who is signed in)."""
    context.setdefault("member", request.get(MEMBER))
    context.setdefault("root", root(request))
    html = _templates.get_template(template).render(**context)
    return web.Response(
        text=html, status=status, content_type="text/html", headers={"Cache-Control": "no-store"}
    )


def redirect(location: str, status: int = 303) -> web.Response:
    """A redirect as a plain response (cookies can be set on it before it is returned)."""
    return web.Response(status=status, headers={"Location": location, "Cache-Control": "no-store"})


def error(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return page(request, "error.html", status=status, title=title, message=message)


def root(request: web.Request) -> str:
    """The path the gallery is mounted at (`/gallery`), from the sub-app's prefix."""
    return request.config_dict[GALLERY].root


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = (HERE / "static" / name).read_bytes()
    return web.Response(
        body=body, content_type=STATIC[name], headers={"Cache-Control": "public, max-age=300"}
    )


@web.middleware
async def security_headers(request: web.Request, handler) -> web.StreamResponse:
    """Every answer carries `HEADERS`; refusals are HTML pages (the API's JSON errors are for `/v1`)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == "text/html":
            response = web.Response(text=exc.text, status=exc.status, content_type="text/html")
        elif exc.status == 404:
            response = error(request, 404, "Not found", "There is no such page here.")
        else:
            response = web.Response(text=exc.text or exc.reason, status=exc.status, content_type="text/plain")
    except Exception:
        if request.path.endswith("/events"):  # a stream that has started cannot become a page
            raise
        reference = uuid.uuid4().hex[:12]
        log.exception("gallery request %s %s failed (reference %s)", request.method, request.path, reference)
        response = error(
            request, 500, "Something went wrong", f"Something went wrong on our side. Reference: {reference}"
        )
    if not response.prepared:  # a stream (the job's events) set its own headers before it started
        response.headers.update({k: v for k, v in HEADERS.items() if k not in response.headers})
    return response
