"""Submitting through the API: a request body becomes a `jobs` spec (checked exactly as the chat bots and the CLI
check theirs), then either the stored result of an identical earlier job (the result cache) or a job enqueued
through `jobs.queue.enqueue`, so quotas, tiers, fairness, bans and pauses apply as everywhere else.

Reused by batches (`bots.api.batches`) and the gallery's "same again" (`bots.api.gallery`): build a spec with
`images_spec` / `edit_spec` / `upscale_spec_of`, then `submit_spec` it with a reply target (`api_target`).

Input images travel in the JSON body as base64 (standard alphabet, padding optional, line breaks and a `data:`
URL prefix allowed), checked by `jobs.inputs.read_image` with its limits, then stored content-addressed like the
bots' uploads.

The result cache: an identical request (the whole spec: model, prompt, negative, size, steps, guidance, seed,
count, LoRAs, input images by content hash) from the same tenant is answered with the earlier SUCCEEDED job
itself (same id, same images), without GPU work and without touching the quota (it reserves nothing). Requests
that depend on a seed can hit only when they give one; an upscale, which has no seed, is deterministic and can
always hit. `"cache": false` skips the lookup (the new job is still remembered for later requests). The cache
is a short list of job ids per (tenant, spec digest) in Redis, kept for `CACHE_TTL_S`; each candidate is
checked in the database (same tenant, succeeded, all its images there) before it is used. A banned user or a
paused tenant gets no hit either: the refusal enqueueing would give.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bots.api.errors import ApiError
from bots.api.services import ApiServices
from engine.canvas import Extend
from engine.lora import LoraLibrary, UnknownLoraError, check_loras
from engine.registry import UnknownModelError
from jobs.inputs import InputImageError, read_image, store_input
from jobs.queue import enqueue
from jobs.specs import (
    MAX_PROMPT_CHARS,
    MAX_SEED,
    Enhance,
    Imagine,
    Inpaint,
    ReplyTarget,
    Upscale,
    Vary,
    enhance_spec,
    imagine_spec,
    inpaint_spec,
    upscale_spec,
    vary_spec,
)
from jobs.training import tenant_loras
from quotas.errors import QueueBusy, QuotaExceeded, QuotaRefused, RelaxNotAllowed, TenantPaused, UserBanned
from quotas.policy import policy_for
from storage.models import Image, Job, JobStatus, Tenant, User
from storage.quota_models import UserBan

Spec = Imagine | Vary | Inpaint | Upscale | Enhance

API_PLATFORM = "api"
CACHE_TTL_S = 7 * 24 * 3600
CACHE_CANDIDATES = 5


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, and values are not coerced ("7" is not 7)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class LoraChoice(RequestModel):
    name: str = Field(min_length=1, max_length=64)
    weight: float = Field(1.0, ge=-2, le=2)


class GenerationOptions(RequestModel):
    """What shapes a text-to-image job besides its prompt: `POST /v1/images` and each prompt of a batch."""

    negative: str = Field("", max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(None, max_length=200)
    width: int | None = Field(None, ge=1, le=100_000)
    height: int | None = Field(None, ge=1, le=100_000)
    aspect: str | None = Field(None, max_length=20)
    steps: int | None = Field(None, ge=1, le=10_000)
    guidance: float | None = Field(None, ge=0, le=1000)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    count: int | None = Field(None, ge=1, le=100)
    loras: list[LoraChoice] = Field(default_factory=list, max_length=16)
    enhance_faces: bool = False
    hires: float | None = None  # only 1: no hires fix above the native size (jobs.specs.imagine_spec)
    # auto: fast while the fast budget lasts, then relax where the tier allows; fast: refused past the budget;
    # relax: idle GPU time only, not charged against the fast budget (jobs.relax)
    lane: Literal["auto", "fast", "relax"] = "auto"
    cache: bool = True
    webhook_url: str | None = Field(None, max_length=2000)


class ImagesRequest(GenerationOptions):
    """`POST /v1/images`: text-to-image, or image-to-image when `image` is given (the image sets the size)."""

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    image: str | None = None
    strength: float | None = Field(None, gt=0, le=1)


class ExtendRequest(RequestModel):
    left: int = Field(0, ge=0, le=100_000)
    right: int = Field(0, ge=0, le=100_000)
    top: int = Field(0, ge=0, le=100_000)
    bottom: int = Field(0, ge=0, le=100_000)


class EditsRequest(RequestModel):
    """`POST /v1/edits`: insertion (paint `prompt` into the mask's white), removal (fill the mask's white with
    background) or outpaint (extend the canvas by `extend` and paint the new area)."""

    mode: Literal["insertion", "removal", "outpaint"]
    image: str
    mask: str | None = None
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    negative: str = Field("", max_length=MAX_PROMPT_CHARS)
    extend: ExtendRequest | None = None
    model: str | None = Field(None, max_length=200)
    steps: int | None = Field(None, ge=1, le=10_000)
    guidance: float | None = Field(None, ge=0, le=1000)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    count: int | None = Field(None, ge=1, le=100)
    cache: bool = True
    webhook_url: str | None = Field(None, max_length=2000)


class UpscalesRequest(RequestModel):
    """`POST /v1/upscales`: enlarge 2x or 4x; with `faces`, restore faces too (after enlarging, when `scale`)."""

    image: str
    scale: int | None = Field(None, ge=1, le=16)
    model: str | None = Field(None, max_length=200)
    faces: bool = False
    face_model: str | None = Field(None, max_length=200)
    fidelity: float | None = Field(None, ge=0, le=1)
    cache: bool = True
    webhook_url: str | None = Field(None, max_length=2000)


@dataclass(frozen=True)
class Built:
    """A checked spec and whether an identical earlier job may answer it (`cacheable`: see the module doc)."""

    spec: Spec
    cacheable: bool


# --- request bodies → specs ---------------------------------------------------------------------------------


def spec_error(exc: ValueError, image_field: str | None = None) -> ApiError:
    """The API's refusal for a spec builder's ValueError (the same messages the chat bots show)."""
    message = str(exc)
    if isinstance(exc, UnknownModelError):
        return ApiError(422, "unknown_model", message, "model")
    if isinstance(exc, UnknownLoraError):
        return ApiError(422, "unknown_lora", message, "loras")
    if isinstance(exc, InputImageError):
        if "MiB; the limit" in message or "megapixels" in message or "longest side" in message:
            return ApiError(413 if "MiB" in message else 422, "image_too_large", message, image_field)
        return ApiError(422, "invalid_image", message, image_field)
    code = "out_of_range" if _RANGE.search(message) else "invalid_value"
    return ApiError(422, code, message, _field_named(message))


_RANGE = re.compile(r"between|exceeds|below|limit|at most|at least|more than")
_FIELDS = re.compile(
    r"\b(width|height|steps|count|guidance|seed|negative|prompt|aspect|strength|extend|mask|scale|fidelity"
    r"|LoRA|model|image|hires)\b"
)
_FIELD_NAMES = {"LoRA": "loras", "negative": "negative"}


def _field_named(message: str) -> str | None:
    found = _FIELDS.search(message)
    if found is None:
        return None
    word = found.group(1)
    return _FIELD_NAMES.get(word, word)


def decode_image(data: str, field: str):  # -> PIL.Image.Image
    """A base64 image from the body, decoded and checked (`jobs.inputs.read_image`), or an ApiError. Line
    breaks (`base64` wraps at 76 columns) and a `data:image/…;base64,` prefix are accepted."""
    from jobs.inputs import MAX_INPUT_BYTES

    if data.startswith("data:") and ";base64," in data[:100]:
        data = data.partition(";base64,")[2]
    data = "".join(data.split())
    if len(data) > MAX_INPUT_BYTES * 4 // 3 + 8:
        raise ApiError(
            413,
            "image_too_large",
            f"{field} is over the limit of {MAX_INPUT_BYTES / 2**20:.0f} MiB",
            field,
        )
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_image", f"{field} is not base64 (standard alphabet)", field) from None
    try:
        return read_image(raw, name=field)
    except InputImageError as exc:
        raise spec_error(exc, field) from None


async def images_spec(services: ApiServices, tenant: Tenant, body: ImagesRequest) -> Built:
    """The spec of a `POST /v1/images` body: Imagine, or Vary when it has an image."""
    if body.image is not None:
        return await _vary_spec(services, body)
    if body.strength is not None:
        raise ApiError(422, "invalid_value", "strength needs an image", "strength")
    if (body.width is None) != (body.height is None):
        missing = "height" if body.height is None else "width"
        raise ApiError(422, "invalid_value", "give both width and height, or neither", missing)
    if body.width is not None and body.aspect is not None:
        raise ApiError(422, "invalid_value", "give a size or an aspect ratio, not both", "aspect")
    loras = [(choice.name, choice.weight) for choice in body.loras]
    try:
        spec = imagine_spec(
            services.registry,
            prompt=body.prompt,
            negative=body.negative,
            model=body.model,
            size=None if body.width is None else f"{body.width}x{body.height}",
            aspect=body.aspect,
            steps=body.steps,
            guidance=body.guidance,
            seed=body.seed,
            count=body.count,
            tiny=services.tiny_models,
            random_seed=secrets.randbelow(MAX_SEED + 1),
            enhance_faces=body.enhance_faces,
            hires=body.hires,
        )
        if loras:
            check_loras(loras)  # count, repeats, weights; then the names, as the tenant sees them
            view = await tenant_loras(tenant, LoraLibrary(services.loras_dir))
            check_loras(loras, view)
            spec = spec.model_copy(update={"loras": [(view.spec_name(n), float(w)) for n, w in loras]})
    except ValueError as exc:
        raise spec_error(exc) from None
    return Built(spec, cacheable=body.seed is not None)


async def _vary_spec(services: ApiServices, body: ImagesRequest) -> Built:
    for field, given in (
        ("width", body.width),
        ("height", body.height),
        ("aspect", body.aspect),
        ("loras", body.loras),
        ("enhance_faces", body.enhance_faces),
        ("hires", body.hires is not None),
    ):
        if given:
            raise ApiError(
                422, "invalid_value", f"{field} does not work with an image (the image sets the size)", field
            )
    picture = decode_image(body.image or "", "image")
    try:
        spec = vary_spec(
            services.registry,
            image=picture,
            prompt=body.prompt,
            negative=body.negative,
            **({} if body.strength is None else {"strength": body.strength}),
            model=body.model,
            steps=body.steps,
            guidance=body.guidance,
            seed=body.seed,
            count=body.count,
            tiny=services.tiny_models,
            random_seed=secrets.randbelow(MAX_SEED + 1),
        )
    except ValueError as exc:
        raise spec_error(exc) from None
    key = await store_input(services.blobs, picture)
    return Built(spec.model_copy(update={"image": key}), cacheable=body.seed is not None)


async def edit_spec(services: ApiServices, body: EditsRequest) -> Built:
    """The Inpaint spec of a `POST /v1/edits` body."""
    image = decode_image(body.image, "image")
    mask = None if body.mask is None else decode_image(body.mask, "mask")
    try:
        spec = inpaint_spec(
            services.registry,
            mode=body.mode,
            image=image,
            mask=mask,
            prompt=body.prompt,
            negative=body.negative,
            extend=None if body.extend is None else Extend(**body.extend.model_dump()),
            model=body.model,
            steps=body.steps,
            guidance=body.guidance,
            seed=body.seed,
            count=body.count,
            tiny=services.tiny_models,
            random_seed=secrets.randbelow(MAX_SEED + 1),
        )
    except ValueError as exc:
        raise spec_error(exc) from None
    keys = {"image": await store_input(services.blobs, image)}
    if mask is not None:
        keys["mask"] = await store_input(services.blobs, mask)
    return Built(spec.model_copy(update=keys), cacheable=body.seed is not None)


async def upscale_spec_of(services: ApiServices, body: UpscalesRequest) -> Built:
    """The Upscale (or, with `faces`, Enhance) spec of a `POST /v1/upscales` body."""
    if not body.faces and (body.face_model is not None or body.fidelity is not None):
        field = "face_model" if body.face_model is not None else "fidelity"
        raise ApiError(422, "invalid_value", f'{field} needs "faces": true', field)
    if body.faces and body.model is not None:
        raise ApiError(422, "invalid_value", 'with "faces": true, name the restorer in face_model', "model")
    image = decode_image(body.image, "image")
    try:
        if body.faces:
            spec: Spec = enhance_spec(
                services.registry,
                image=image,
                model=body.face_model,
                fidelity=body.fidelity,
                upscale=body.scale,
                tiny=services.tiny_models,
            )
        else:
            spec = upscale_spec(
                services.registry, image=image, scale=body.scale, model=body.model, tiny=services.tiny_models
            )
    except ValueError as exc:
        raise spec_error(exc) from None
    key = await store_input(services.blobs, image)
    return Built(spec.model_copy(update={"image": key}), cacheable=True)  # no seed: deterministic


# --- specs → jobs ---------------------------------------------------------------------------------------------


def api_target(api_key_id: int | None, webhook_url: str | None = None, **extra: object) -> ReplyTarget:
    """The reply target of an API job: the key that asked, and its webhook when it gave one."""
    data: dict = {"api_key_id": api_key_id, **extra}
    if webhook_url is not None:
        data["webhook_url"] = webhook_url
    return ReplyTarget(platform=API_PLATFORM, data=data)


@dataclass(frozen=True)
class Submitted:
    """The job answering a request; `cached`: an earlier identical job's, nothing new was enqueued or charged;
    `created`: False when the request (its Idempotency-Key) was seen before."""

    job: Job
    cached: bool
    created: bool
    position: int | None = None
    eta_s: float | None = None


def request_id_for(api_key_id: int | None, idempotency_key: str | None) -> str:
    """The enqueue request identity: the client's Idempotency-Key (per key) makes a retried POST find its job."""
    if idempotency_key:
        return f"api:{api_key_id}:{idempotency_key}"
    return f"api:{uuid.uuid4()}"


async def submit_spec(
    services: ApiServices,
    built: Built,
    *,
    tenant: Tenant,
    user: User,
    reply_target: ReplyTarget,
    request_id: str,
    use_cache: bool = True,
    lane: str = "auto",
) -> Submitted:
    """Answer `built` from the result cache when allowed, else enqueue it in `lane` (jobs.relax); refusals are
    ApiErrors."""
    cache = cache_key(tenant, built.spec) if built.cacheable else None
    try:
        if cache is not None and use_cache:
            earlier = await cached_job(services, cache, tenant, built.spec)
            if earlier is not None:
                await _gate(services, tenant, user)
                return Submitted(earlier, cached=True, created=False)
        queued = await enqueue(
            services.redis,
            built.spec,
            request_id=request_id,
            reply_target=reply_target,
            queue_name=services.queue_name,
            tenant=tenant,
            user=user,
            tiers=services.tiers,
            lane=lane,
        )
    except QuotaRefused as refusal:
        raise refusal_error(refusal) from None
    if cache is not None and queued.created:
        await remember(services, cache, queued.job_id)
    job = await Job.get(id=queued.job_id)
    return Submitted(job, cached=False, created=queued.created, position=queued.position, eta_s=queued.eta_s)


def refusal_error(refusal: QuotaRefused) -> ApiError:
    """A quota refusal as the API says it (the message is the one the chat bots show)."""
    message = str(refusal)
    if isinstance(refusal, QuotaExceeded):
        headers = {}
        if refusal.resets_at is not None:  # a period's limit: no use asking again before it resets
            wait_s = (refusal.resets_at - datetime.now(UTC)).total_seconds()
            headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
        return ApiError(429, "quota_exceeded", message, headers=headers)
    if isinstance(refusal, QueueBusy):
        return ApiError(503, "queue_busy", message, headers={"Retry-After": "60"})
    if isinstance(refusal, TenantPaused):
        return ApiError(403, "tenant_paused", message)
    if isinstance(refusal, UserBanned):
        return ApiError(403, "key_banned", message)
    if isinstance(refusal, RelaxNotAllowed):
        return ApiError(403, "relax_not_allowed", message)
    return ApiError(403, "refused", message)


async def _gate(services: ApiServices, tenant: Tenant, user: User) -> None:
    """A cache hit costs nothing, but a paused tenant or a banned user is still refused."""
    if (await policy_for(tenant, services.tiers)).paused:
        raise TenantPaused()
    if await UserBan.exists(user_id=user.id):
        raise UserBanned()


# --- the result cache -----------------------------------------------------------------------------------------


def cache_key(tenant: Tenant, spec: Spec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return f"atelier:api:cache:{tenant.id}:{hashlib.sha256(canonical.encode()).hexdigest()}"


async def cached_job(services: ApiServices, key: str, tenant: Tenant, spec: Spec) -> Job | None:
    """The newest succeeded job of `tenant` remembered under `key` whose images are all stored, or None."""
    for raw in await services.redis.lrange(key, 0, CACHE_CANDIDATES - 1):
        job_id = raw.decode() if isinstance(raw, bytes) else raw
        job = await Job.get_or_none(id=job_id, tenant_id=tenant.id, status=JobStatus.SUCCEEDED)
        if job is None or job.spec != spec.model_dump(mode="json"):
            continue
        if await Image.filter(job_id=job.id).count() == int(job.spec.get("count", 1)):
            return job
    return None


async def remember(services: ApiServices, key: str, job_id: str) -> None:
    async with services.redis.pipeline(transaction=True) as pipe:
        pipe.lrem(key, 0, job_id)
        pipe.lpush(key, job_id)
        pipe.ltrim(key, 0, CACHE_CANDIDATES - 1)
        pipe.expire(key, CACHE_TTL_S)
        await pipe.execute()
