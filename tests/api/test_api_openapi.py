"""The OpenAPI document stays true: every API route the app registers is in it with its method, nothing else is,
and what it says about auth matches the middleware (public paths carry an empty `security`)."""

from __future__ import annotations

import re

from aiohttp import web

from bots.api.app import build_app
from bots.api.auth import PUBLIC_PATHS
from bots.api.openapi import document
from bots.api.services import ApiServices

METHODS = {"get", "post", "put", "patch", "delete"}


def app() -> web.Application:
    # The document and the routes need no service: the app is built, never started.
    return build_app(ApiServices(redis=None, registry=None, blobs=None, queue_name="unused"))  # type: ignore[arg-type]


def registered(application: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in application.router.routes():
        info = route.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method == "HEAD" or path is None:
            continue  # aiohttp adds HEAD to every GET
        routes.add((route.method.lower(), re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)))
    return routes


def documented(doc: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item if method in METHODS}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    """Every JSON route (under /v1, and /healthz) is in the document, and everything in it is a route. Pages
    served beside the API (the gallery's HTML) are not API and stay out of it."""
    application = app()
    doc = document(application)
    api = {(m, p) for m, p in registered(application) if p.startswith("/v1/") or p == "/healthz"}
    assert api == documented(doc)
    assert {
        ("post", "/v1/images"),
        ("get", "/v1/jobs/{job_id}/events"),
        ("get", "/v1/openapi.json"),
    } <= documented(doc)


def test_the_document_is_openapi_3_1_with_path_parameters_declared() -> None:
    application = app()
    doc = document(application)
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)
            assert operation["responses"], (method, path)
            public = path in application[PUBLIC_PATHS] or not path.startswith("/v1/")
            assert (operation.get("security") == []) == public, (method, path)
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', str(doc).replace("'", '"')))
    assert refs <= set(doc["components"]["schemas"])
