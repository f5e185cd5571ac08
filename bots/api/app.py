"""The API's aiohttp application: `build_app(services)` wires the middlewares and every route module.

A route module has `add_routes(app)`, which adds its routes (under `/v1`, or its own prefix for pages) and may
mark paths public (`app[PUBLIC_PATHS]`, no API key needed). To add a module, name it in `ROUTE_MODULES`.
Handlers read the clients with `services_of(request)` and the caller with `caller_of(request)`, raise
`ApiError` for refusals, and parse bodies with `read_json(request, Model)` (`bots.api.errors`).
"""

from __future__ import annotations

import importlib
import math

from aiohttp import web

from bots.api.auth import PUBLIC_PATHS, add_rate_headers, auth_middleware
from bots.api.errors import errors_middleware
from bots.api.openapi import PATHS
from bots.api.services import SERVICES, ApiServices
from jobs.inputs import MAX_INPUT_BYTES

ROUTE_MODULES: tuple[str, ...] = (
    "bots.api.routes_catalog",
    "bots.api.routes_submit",
    "bots.api.routes_jobs",
    "bots.api.routes_images",
    "bots.api.batches",
    "bots.api.gallery",
    "bots.api.openapi",
)

# An image and a mask, each at the input limit and base64-encoded (4/3 larger), and room for the rest.
MAX_BODY_BYTES = 2 * math.ceil(MAX_INPUT_BYTES * 4 / 3) + 2**20


def build_app(services: ApiServices) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=MAX_BODY_BYTES)
    app[SERVICES] = services
    app[PUBLIC_PATHS] = set()
    app[PATHS] = {}
    app.on_response_prepare.append(add_rate_headers)
    app.router.add_get("/healthz", _healthz)
    for name in ROUTE_MODULES:
        importlib.import_module(name).add_routes(app)
    return app


async def _healthz(request: web.Request) -> web.Response:
    """200 while Redis answers (the database is checked by the process's /healthz, see atelier.cli_api)."""
    await request.app[SERVICES].redis.ping()
    return web.Response(text="ok")
