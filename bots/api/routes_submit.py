"""`POST /v1/images`, `POST /v1/edits`, `POST /v1/upscales`: submit a job (see `bots.api.submit`).

A new job answers 202 with the job (status `queued`, position, ETA) and `Location: /v1/jobs/{id}`; a cache hit
answers 200 with the earlier, succeeded job and its images. `X-Atelier-Cache` says `hit` or `miss` either way.
An `Idempotency-Key` header (at most 200 characters) makes a retried POST with the same key answer the job of
the first one instead of making a second.
"""

from __future__ import annotations

from aiohttp import web

from bots.api.errors import ApiError, read_json
from bots.api.openapi import AUTH_ERRORS, add_paths, error, json_body
from bots.api.services import caller_of, services_of
from bots.api.submit import (
    Built,
    EditsRequest,
    ImagesRequest,
    UpscalesRequest,
    api_target,
    edit_spec,
    images_spec,
    request_id_for,
    submit_spec,
    upscale_spec_of,
)
from bots.api.views import job_url, job_view
from bots.api.webhooks import check_webhook_url, record_job


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/images", post_images)
    app.router.add_post("/v1/edits", post_edits)
    app.router.add_post("/v1/upscales", post_upscales)
    add_paths(app, PATHS)


async def post_images(request: web.Request) -> web.Response:
    body = await read_json(request, ImagesRequest)
    await check_webhook_url(services_of(request).settings, body.webhook_url)
    built = await images_spec(services_of(request), caller_of(request).tenant, body)
    return await _submit(request, built, body.cache, body.webhook_url, body.lane)


async def post_edits(request: web.Request) -> web.Response:
    body = await read_json(request, EditsRequest)
    await check_webhook_url(services_of(request).settings, body.webhook_url)
    return await _submit(request, await edit_spec(services_of(request), body), body.cache, body.webhook_url)


async def post_upscales(request: web.Request) -> web.Response:
    body = await read_json(request, UpscalesRequest)
    await check_webhook_url(services_of(request).settings, body.webhook_url)
    built = await upscale_spec_of(services_of(request), body)
    return await _submit(request, built, body.cache, body.webhook_url)


async def _submit(
    request: web.Request, built: Built, use_cache: bool, webhook_url: str | None, lane: str = "auto"
) -> web.Response:
    services, caller = services_of(request), caller_of(request)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters")
    request_id = request_id_for(caller.key.id, idempotency_key)
    submitted = await submit_spec(
        services,
        built,
        tenant=caller.tenant,
        user=await caller.user(),
        reply_target=api_target(caller.key.id, webhook_url),
        request_id=request_id,
        use_cache=use_cache,
        lane=lane,
    )
    if submitted.cached and webhook_url is not None:  # the earlier job ended long ago: tell this webhook now
        await record_job(submitted.job, api_key_id=caller.key.id, url=webhook_url, key=request_id)
    body = await job_view(services, submitted.job)
    headers = {
        "X-Atelier-Cache": "hit" if submitted.cached else "miss",
        "Location": job_url(submitted.job.id),
    }
    return web.json_response(body, status=200 if submitted.cached else 202, headers=headers)


JOB = {"$ref": "#/components/schemas/Job"}
SUBMIT_RESPONSES = {
    "202": json_body(JOB, "Queued: the new job (X-Atelier-Cache: miss; Location: the job)"),
    "200": json_body(
        JOB, "A cache hit: the earlier identical job, succeeded, with its images (X-Atelier-Cache: hit)"
    ),
    "400": error("malformed_json, invalid_idempotency_key"),
    "403": error("tenant_paused, key_banned, relax_not_allowed"),
    "413": error("body_too_large, image_too_large"),
    "422": error(
        "unknown_field, missing_field, out_of_range, invalid_value, unknown_model, unknown_lora, invalid_image, "
        "image_too_large, invalid_webhook_url"
    ),
    "429": error("rate_limited (Retry-After) or quota_exceeded"),
    "401": AUTH_ERRORS["401"],
    "503": error("queue_busy (Retry-After)"),
}
COMMON = {
    "cache": {
        "type": "boolean",
        "default": True,
        "description": "false: do not answer from the result cache",
    },
    "webhook_url": {"type": "string", "format": "uri", "description": "POSTed (signed) when the job ends"},
}
TUNING = {
    "model": {"type": "string", "description": "A preset name (GET /v1/models); default: the role's default"},
    "negative": {"type": "string", "maxLength": 1000},
    "steps": {"type": "integer", "minimum": 1},
    "guidance": {"type": "number", "minimum": 0},
    "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295, "description": "image i uses seed+i"},
    "count": {"type": "integer", "minimum": 1},
}
IMAGE = {"type": "string", "contentEncoding": "base64", "description": "PNG, JPEG, WebP, GIF, BMP or TIFF"}


def _request(properties: dict, required: list[str], description: str) -> dict:
    return {
        "required": True,
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": required,
                    "properties": {**properties, **COMMON},
                }
            }
        },
    }


IDEMPOTENCY = [
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": 200},
        "description": "A retried POST with the same key (and API key) answers the first one's job",
    }
]
PATHS = {
    "/v1/images": {
        "post": {
            "summary": "Text-to-image; image-to-image when `image` is given",
            "parameters": IDEMPOTENCY,
            "requestBody": _request(
                {
                    "prompt": {"type": "string", "minLength": 1, "maxLength": 1000},
                    **TUNING,
                    "width": {"type": "integer", "description": "with height; a multiple of 8 (16 for Flux)"},
                    "height": {"type": "integer"},
                    "aspect": {
                        "type": "string",
                        "examples": ["16:9"],
                        "description": "instead of width/height",
                    },
                    "loras": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "weight": {"type": "number", "minimum": -2, "maximum": 2, "default": 1},
                            },
                        },
                    },
                    "enhance_faces": {"type": "boolean", "default": False},
                    "hires": {
                        "enum": [1],
                        "description": "hires fix: by default a size above the model's native resolution is "
                        "generated at the native size, upscaled and refined in a second pass; 1 turns it off "
                        "and generates directly at the size asked for",
                    },
                    "image": IMAGE,
                    "strength": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": 1,
                        "description": "with image",
                    },
                },
                ["prompt"],
                "What to generate",
            ),
            "responses": SUBMIT_RESPONSES,
        }
    },
    "/v1/edits": {
        "post": {
            "summary": "Inpainting: insertion, removal or outpaint of an image",
            "parameters": IDEMPOTENCY,
            "requestBody": _request(
                {
                    "mode": {"enum": ["insertion", "removal", "outpaint"]},
                    "image": IMAGE,
                    "mask": {**IMAGE, "description": "white repaints, black keeps (insertion, removal)"},
                    "prompt": {"type": "string", "maxLength": 1000, "description": "required for insertion"},
                    "extend": {
                        "type": "object",
                        "additionalProperties": False,
                        "description": "pixels added per side (outpaint)",
                        "properties": {
                            s: {"type": "integer", "minimum": 0} for s in ("left", "right", "top", "bottom")
                        },
                    },
                    **TUNING,
                },
                ["mode", "image"],
                "The edit",
            ),
            "responses": SUBMIT_RESPONSES,
        }
    },
    "/v1/upscales": {
        "post": {
            "summary": "Enlarge an image 2x or 4x; with faces, restore its faces too",
            "parameters": IDEMPOTENCY,
            "requestBody": _request(
                {
                    "image": IMAGE,
                    "scale": {"type": "integer", "enum": [2, 4]},
                    "model": {"type": "string", "description": "an upscale preset"},
                    "faces": {"type": "boolean", "default": False},
                    "face_model": {"type": "string", "description": "with faces: gfpgan-1.4 or codeformer"},
                    "fidelity": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                        "description": "CodeFormer only",
                    },
                },
                ["image"],
                "The image to enlarge",
            ),
            "responses": SUBMIT_RESPONSES,
        }
    },
}
