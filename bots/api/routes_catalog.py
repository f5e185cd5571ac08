"""What a caller can ask for: `GET /v1/models`, `GET /v1/loras` (the tenant's own and the shared ones) and
`GET /v1/queue` (the queue per tier and model, and the tenant's own jobs in it)."""

from __future__ import annotations

from aiohttp import web

from bots.api.openapi import AUTH_ERRORS, add_paths, json_body
from bots.api.services import caller_of, services_of
from engine.lora import LoraLibrary
from jobs.queue_status import queue_status
from storage.lora_models import LoraModel
from storage.models import Job, JobStatus

ROLES = ("txt2img", "inpaint", "upscale", "face")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/loras", loras)
    app.router.add_get("/v1/queue", queue)
    add_paths(app, PATHS)


async def models(request: web.Request) -> web.Response:
    """Every preset a request may name, by role, with its limits and defaults. With tiny models on, a real
    preset's name is still accepted and runs its tiny counterpart (`tiny_for`)."""
    services = services_of(request)
    registry = services.registry
    found = []
    for role in ROLES:
        default = registry.default(role)
        for name in registry.names(role):
            preset = registry.get(name)
            found.append(
                {
                    "name": name,
                    "role": role,
                    "family": preset.family,
                    "default": name == default,
                    "tiny_for": preset.tiny if services.tiny_models and not preset.is_tiny else None,
                    "default_width": preset.default_width,
                    "default_height": preset.default_height,
                    "max_side": preset.max_side,
                    "max_pixels": preset.max_pixels,
                    "multiple_of": preset.multiple_of,
                    "default_steps": preset.default_steps,
                    "max_steps": preset.max_steps,
                    "default_guidance": preset.default_guidance,
                    "max_guidance": preset.max_guidance,
                    "max_count": preset.max_count,
                }
            )
    return web.json_response({"models": found})


async def loras(request: web.Request) -> web.Response:
    """The tenant's own LoRAs (any state; only `ready` ones can be used) and the shared folder's."""
    caller, services = caller_of(request), services_of(request)
    own = await LoraModel.filter(tenant_id=caller.tenant.id).order_by("name")
    found = [
        {
            "name": lora.name,
            "scope": "tenant",
            "status": lora.status.value,
            "family": lora.family,
            "trigger": lora.trigger,
        }
        for lora in own
    ]
    own_names = {lora.name for lora in own}
    shared = LoraLibrary(services.loras_dir).names()
    found += [
        {"name": name, "scope": "shared", "status": "ready", "family": None, "trigger": None}
        for name in shared
        if name not in own_names
    ]
    return web.json_response({"loras": found})


async def queue(request: web.Request) -> web.Response:
    caller, services = caller_of(request), services_of(request)
    lines = await queue_status(services.redis, services.queue_name)
    mine = await Job.filter(
        tenant_id=caller.tenant.id, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
    ).values_list("status", flat=True)
    return web.json_response(
        {
            "lines": [
                {
                    "tier": line.tier,
                    "model": line.model,
                    "queued": line.queued,
                    "running": line.running,
                    "gpu_seconds": round(line.gpu_seconds, 1),
                }
                for line in lines
            ],
            "queued": sum(line.queued for line in lines),
            "running": sum(line.running for line in lines),
            "yours": {
                "queued": sum(1 for s in mine if s == JobStatus.QUEUED),
                "running": sum(1 for s in mine if s == JobStatus.RUNNING),
            },
        }
    )


PATHS = {
    "/v1/models": {
        "get": {
            "summary": "The models a request may name, by role (txt2img, inpaint, upscale, face), with limits",
            "responses": {
                "200": json_body({"type": "object", "properties": {"models": {"type": "array"}}}),
                **AUTH_ERRORS,
            },
        }
    },
    "/v1/loras": {
        "get": {
            "summary": "The tenant's own LoRAs (scope tenant) and the shared ones (scope shared)",
            "responses": {
                "200": json_body({"type": "object", "properties": {"loras": {"type": "array"}}}),
                **AUTH_ERRORS,
            },
        }
    },
    "/v1/queue": {
        "get": {
            "summary": "The queue per tier and model, and how many of the tenant's jobs are in it",
            "responses": {"200": json_body({"type": "object"}), **AUTH_ERRORS},
        }
    },
}
