"""The OpenAPI 3.1 document of the API, served at `GET /v1/openapi.json` (no key needed).

Hand-written, so it says what a client needs in words; tests/api/test_openapi.py keeps it true: every route
the app registers is here, with its method, and nothing else is. A module that adds routes adds its paths
with `add_paths(app, {...})` in its `add_routes`, so its part of the document lives beside its handlers.
"""

from __future__ import annotations

import copy

from aiohttp import web

from bots.api.auth import PUBLIC_PATHS

OPENAPI_PATH = "/v1/openapi.json"
PATHS: web.AppKey[dict] = web.AppKey("atelier_api_openapi_paths", dict)

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string", "description": "Stable; see the README's list of codes."},
                "message": {"type": "string", "description": "For a person; may change."},
                "field": {"type": ["string", "null"], "description": "The request field at fault."},
            },
        }
    },
}


IMAGE = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "index": {"type": "integer"},
        "url": {
            "type": "string",
            "description": "GET it with the same key for the PNG (relative to the API)",
        },
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "seed": {"type": "integer"},
        "sha256": {
            "type": "string",
            "description": "of the image's pixels as a bare PNG, the same for every signing of it (not of the file)",
        },
        "size_bytes": {"type": "integer"},
        "flagged": {"type": "boolean", "description": "by the model's safety checker"},
        "withheld": {
            "type": "boolean",
            "description": "flagged and the tenant's safety filter is on: url gives 403",
        },
    },
}
JOB = {
    "type": "object",
    "required": ["id", "status", "images"],
    "properties": {
        "id": {"type": "string"},
        "kind": {
            "type": "string",
            "enum": ["imagine", "vary", "inpaint", "upscale", "creative_upscale", "enhance", "train_lora"],
        },
        "model": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "lane": {
            "type": "string",
            "enum": ["fast", "relax"],
            "description": "relax: runs only while no fast job waits, not charged against the fast budget",
        },
        "position": {
            "type": ["integer", "null"],
            "description": "1: starts next; 0: running; null: not queued",
        },
        "eta_s": {"type": ["number", "null"], "description": "seconds until it should be done"},
        "progress": {
            "type": ["object", "null"],
            "properties": {"step": {"type": "integer"}, "total": {"type": "integer"}},
        },
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "error": {"type": ["string", "null"]},
        "spec": {"type": "object", "description": "the job's parameters, defaults filled in"},
        "images": {"type": "array", "items": {"$ref": "#/components/schemas/Image"}},
        "images_expired": {
            "type": ["string", "null"],
            "description": "set once retention deleted the job's images: why they are gone, in words",
        },
        "url": {"type": "string"},
        "events_url": {"type": "string"},
    },
}


def error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def json_body(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


AUTH_ERRORS = {
    "401": error("No key, an unknown key or a revoked key"),
    "429": error("Rate limited (Retry-After)"),
}


def add_paths(app: web.Application, paths: dict) -> None:
    """Add a module's paths (OpenAPI path items keyed by aiohttp route path) to the document."""
    for path, item in paths.items():
        app[PATHS].setdefault(path, {}).update(item)


def document(app: web.Application) -> dict:
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "Atelier HTTP API",
            "version": "1",
            "description": "Image generation on Atelier's queue, with the quotas, tiers and safety filter of the "
            "tenant (a Discord server, a Slack workspace) the API key belongs to. Errors are "
            '`{"error": {"code", "message", "field"}}`. Every /v1 answer carries the rate-limit headers of '
            "draft-ietf-httpapi-ratelimit-headers-07 (RateLimit-Limit, -Remaining, -Reset, -Policy) for the "
            "tighter of the key's and the client address's token buckets; a 429 has Retry-After.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key"}},
            "schemas": {"Error": ERROR, "Job": JOB, "Image": IMAGE},
        },
        "paths": copy.deepcopy(app[PATHS]),
    }
    for path in app[PUBLIC_PATHS]:
        for operation in doc["paths"].get(path, {}).values():
            operation["security"] = []
    return doc


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


def add_routes(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi_json)
    app[PUBLIC_PATHS].add(OPENAPI_PATH)
    add_paths(
        app,
        {
            OPENAPI_PATH: {
                "get": {
                    "summary": "This document",
                    "responses": {"200": json_body({"type": "object"}, "The OpenAPI 3.1 document")},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: 200 while the process and its Redis answer",
                    "security": [],
                    "responses": {"200": {"description": "ok", "content": {"text/plain": {}}}},
                }
            },
        },
    )
