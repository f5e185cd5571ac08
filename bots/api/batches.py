"""`POST /v1/batches` (1 to 100 prompts with shared options and a webhook) and `GET /v1/batches/{id}`.

A batch is ordinary jobs submitted together: each prompt becomes a `POST /v1/images` job (the same checks, the
result cache, quotas, tiers and fairness), and the batch row lists them in prompt order.

All or nothing, as far as the request can know:
- Every prompt is checked (built into its spec) before anything is enqueued; the first bad one refuses the
  whole batch, naming it (`prompts.3`: the fourth prompt), and nothing is queued or charged.
- The webhook URL is checked then too (`bots.api.webhooks.check_webhook_url`).
- Admission is asked for the whole batch first (`quotas.ledger.precheck` with every image and every job of it:
  daily images, the tenant's and the user's unfinished jobs, the queue cap): a batch that does not fit is
  refused as a single request would be (429 `quota_exceeded`, 503 `queue_busy`, 403 …), nothing queued.
- Admission is then made job by job, atomically (`quotas.ledger.reserve`). Should a job be refused even so
  (its GPU time, estimated per job only now, passes the tenant's monthly GPU seconds; or another request took
  the room between the check and this job), the jobs already queued stay queued and form the batch, and the
  answer lists each prompt left out in `refused` (index, prompt and the error): they are not tried, since the
  refusal would repeat. A batch whose first job is refused is answered with that refusal, and no batch is made.

Webhooks: each job's end is POSTed (`job.succeeded`, `job.failed`, `job.cancelled`) and, once all have ended,
one `batch.completed` with the batch as `GET /v1/batches/{id}` shows it (`bots.api.webhooks`).

An `Idempotency-Key` header makes a retried POST answer the batch of the first one.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from aiohttp import web
from pydantic import Field
from tortoise.exceptions import IntegrityError

from bots.api.errors import ApiError, not_found, read_json
from bots.api.openapi import AUTH_ERRORS, add_paths, error, json_body
from bots.api.services import caller_of, services_of
from bots.api.submit import (
    Built,
    GenerationOptions,
    ImagesRequest,
    api_target,
    images_spec,
    refusal_error,
    request_id_for,
    submit_spec,
)
from bots.api.webhooks import batch_created, batch_view, check_webhook_url
from jobs.specs import MAX_PROMPT_CHARS
from quotas.errors import QuotaRefused
from quotas.ledger import precheck
from storage.api_models import Batch

MAX_PROMPTS = 100
BATCH_PATH = "/v1/batches/{batch_id}"
Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]


class BatchRequest(GenerationOptions):
    """The prompts, and the options every one of them shares (those of `POST /v1/images`, without an image)."""

    prompts: list[Prompt] = Field(min_length=1, max_length=MAX_PROMPTS)


SHARED = (
    "negative",
    "model",
    "width",
    "height",
    "aspect",
    "steps",
    "guidance",
    "seed",
    "count",
    "loras",
    "hires",
)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/batches", post_batch)
    app.router.add_get(BATCH_PATH, get_batch)
    add_paths(app, PATHS)


async def post_batch(request: web.Request) -> web.Response:
    services, caller = services_of(request), caller_of(request)
    body = await read_json(request, BatchRequest)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters")
    request_id = request_id_for(caller.key.id, idempotency_key)
    batch_id = "b" + hashlib.blake2b(f"{request_id}:batch".encode(), digest_size=10).hexdigest()
    earlier = await Batch.get_or_none(id=batch_id, tenant_id=caller.tenant.id)
    if earlier is not None:  # a retried POST (same Idempotency-Key)
        return _answer(await batch_view(earlier), [])

    built = [await _spec(request, body, i) for i in range(len(body.prompts))]
    await check_webhook_url(services.settings, body.webhook_url)
    user = await caller.user()
    try:
        await precheck(
            caller.tenant,
            user,
            services.tiers,
            images=sum(int(b.spec.count) for b in built),
            jobs=len(built),
            lane=body.lane,
        )
    except QuotaRefused as refusal:
        raise refusal_error(refusal) from None

    job_ids: list[str] = []
    refused: list[dict] = []
    target = api_target(caller.key.id, body.webhook_url, batch_id=batch_id)
    for i, spec in enumerate(built):
        try:
            submitted = await submit_spec(
                services,
                spec,
                tenant=caller.tenant,
                user=user,
                reply_target=target,
                request_id=f"{request_id}:batch:{i}",
                use_cache=body.cache,
                lane=body.lane,
            )
        except ApiError as exc:
            if not job_ids:
                raise
            refused = [
                {
                    "index": j,
                    "prompt": body.prompts[j],
                    "error": {"code": exc.code, "message": exc.message, "field": f"prompts.{j}"},
                }
                for j in range(i, len(built))
            ]
            break
        job_ids.append(submitted.job.id)

    try:
        batch = await Batch.create(
            id=batch_id,
            tenant=caller.tenant,
            api_key=caller.key,
            job_ids=job_ids,
            webhook_url=body.webhook_url,
        )
    except IntegrityError:  # the same Idempotency-Key, at the same moment
        batch = await Batch.get(id=batch_id)
    if await batch_created(batch):
        await batch.refresh_from_db()
    return _answer(await batch_view(batch), refused)


async def _spec(request: web.Request, body: BatchRequest, index: int) -> Built:
    """Prompt `index`'s spec, or the refusal naming it (`prompts.<index>`) when the prompt is at fault."""
    shared = {name: getattr(body, name) for name in SHARED}
    one = ImagesRequest(prompt=body.prompts[index], enhance_faces=body.enhance_faces, **shared)
    try:
        return await images_spec(services_of(request), caller_of(request).tenant, one)
    except ApiError as exc:
        if exc.field not in (None, "prompt"):
            raise  # a shared option: the same for every prompt
        field = f"prompts.{index}"
        raise ApiError(exc.status, exc.code, f"{field}: {exc.message}", field) from None


def _answer(view: dict, refused: list[dict]) -> web.Response:
    return web.json_response({**view, "refused": refused}, status=202, headers={"Location": view["url"]})


async def get_batch(request: web.Request) -> web.Response:
    """The batch and each job's status and images; another tenant's batch is answered 404, like a missing one."""
    batch_id = request.match_info["batch_id"]
    batch = None
    if len(batch_id) <= 64:
        batch = await Batch.get_or_none(id=batch_id, tenant_id=caller_of(request).tenant.id)
    if batch is None:
        raise not_found("batch", batch_id)
    return web.json_response(await batch_view(batch))


STATUS_COUNTS = {
    "type": "object",
    "description": "jobs per status: queued, running, succeeded, failed, cancelled",
    "additionalProperties": {"type": "integer"},
}
BATCH = {
    "type": "object",
    "required": ["id", "status", "counts", "jobs", "url"],
    "properties": {
        "id": {"type": "string"},
        "status": {"enum": ["running", "completed"], "description": "completed once every job has ended"},
        "created_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "webhook_url": {"type": ["string", "null"]},
        "counts": STATUS_COUNTS,
        "jobs": {
            "type": "array",
            "description": "in prompt order",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
                    "error": {"type": ["string", "null"]},
                    "images": {"type": "array", "items": {"type": "object"}},
                    "url": {
                        "type": "string",
                        "description": "GET it for the job's position, ETA and progress",
                    },
                },
            },
        },
        "url": {"type": "string"},
    },
}
REFUSED = {
    "type": "array",
    "description": "prompts left out because admission refused a job after the batch's check (the monthly GPU "
    "seconds, estimated per job, ran out; or another request took the room meanwhile); empty otherwise",
    "items": {
        "type": "object",
        "properties": {
            "index": {"type": "integer"},
            "prompt": {"type": "string"},
            "error": {"$ref": "#/components/schemas/Error/properties/error"},
        },
    },
}
PATHS = {
    "/v1/batches": {
        "post": {
            "summary": "Submit 1 to 100 prompts with shared options; a webhook hears each job's end and the batch's",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "A retried POST with the same key (and API key) answers the first one's batch",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["prompts"],
                            "properties": {
                                "prompts": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": MAX_PROMPTS,
                                    "items": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": MAX_PROMPT_CHARS,
                                    },
                                },
                                **{
                                    name: {"description": "as in POST /v1/images, for every prompt"}
                                    for name in (*SHARED, "enhance_faces", "cache")
                                },
                                "webhook_url": {
                                    "type": "string",
                                    "format": "uri",
                                    "description": "POSTed (signed) at each job's end and at the batch's; checked "
                                    "now against the outbound rules",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": json_body(
                    {"allOf": [BATCH, {"type": "object", "properties": {"refused": REFUSED}}]},
                    "The batch (Location: the batch); nothing was queued for prompts listed in `refused`",
                ),
                "400": error("malformed_json, invalid_idempotency_key"),
                "403": error("tenant_paused, key_banned"),
                "422": error(
                    "unknown_field, missing_field, out_of_range, invalid_value, unknown_model, unknown_lora, "
                    "invalid_webhook_url; a bad prompt is named as prompts.<index>, and nothing is queued"
                ),
                "429": error("rate_limited (Retry-After) or quota_exceeded (for the batch as a whole)"),
                "401": AUTH_ERRORS["401"],
                "503": error("queue_busy (Retry-After)"),
            },
        }
    },
    BATCH_PATH: {
        "get": {
            "summary": "A batch: each job's status and images, counts per status, finished_at",
            "parameters": [
                {"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": json_body(BATCH),
                "404": error("batch_not_found: no such batch, or another tenant's"),
                **AUTH_ERRORS,
            },
        }
    },
}
