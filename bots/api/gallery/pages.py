"""The gallery's pages: a member's galleries, one gallery, an image, a job (live while it runs), the image
bytes, the job's events, and "same again".

Every page of a gallery is for signed-in members of its tenant only. A visitor who is not signed in is sent to
sign in (pages) or answered 401 (image bytes, events); a member asking for a tenant they are not in, or for a
job or image that is not that tenant's, gets 404, the same answer as for one that does not exist, so nothing
says which guilds use Atelier or which ids are taken.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from urllib.parse import urlencode

from aiohttp import web

from bots.api.errors import ApiError
from bots.api.gallery import listing, render, thumbs
from bots.api.gallery.services import GALLERY, MEMBER, GalleryServices
from bots.api.gallery.sessions import Member
from bots.api.safety import source_flagged
from jobs import events
from jobs.retention import expired_words
from jobs.specs import Enhance, Imagine, Inpaint, Upscale, Vary
from storage.blobs import BlobNotFound
from storage.models import Image, Job, JobStatus, Tenant, get_or_create_user
from storage.preferences import preferences_of

log = logging.getLogger(__name__)

AGAIN_SPECS = {cls.model_fields["kind"].default: cls for cls in (Imagine, Vary, Inpaint, Upscale, Enhance)}
FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
KEEPALIVE_S = 15
PASSED_ON = ("position", "eta_s", "step", "total")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class NotSignedIn(Exception):
    pass


async def _tenant(request: web.Request) -> tuple[Member, Tenant]:
    """The signed-in member and the tenant the path names, which they belong to; else NotSignedIn or 404."""
    member: Member | None = request[MEMBER]
    if member is None:
        raise NotSignedIn
    platform, external_id = request.match_info["platform"], request.match_info["tenant"]
    tenant = None
    if member.belongs_to(platform, external_id):
        tenant = await Tenant.get_or_none(platform=platform, external_id=external_id)
    if tenant is None:
        raise web.HTTPNotFound(**_not_found(request))
    return member, tenant


def _not_found(request: web.Request) -> dict:
    response = render.error(request, 404, "Not found", "There is no such gallery, image or job among yours.")
    return {"text": response.text, "content_type": "text/html"}


def _gallery_path(request: web.Request, tenant: Tenant) -> str:
    return f"{render.root(request)}/{tenant.platform}/{tenant.external_id}"


@web.middleware
async def sign_in_first(request: web.Request, handler) -> web.StreamResponse:
    """Pages send a visitor who is not signed in to the sign-in page; bytes and streams answer 401."""
    try:
        return await handler(request)
    except NotSignedIn:
        if request.path.endswith(("/file", "/thumb", "/events", "/preview")) or request.method != "GET":
            raise web.HTTPUnauthorized(text="sign in first") from None
        return render.redirect(f"{render.root(request)}/")


async def index(request: web.Request) -> web.Response:
    services: GalleryServices = request.config_dict[GALLERY]
    member: Member | None = request[MEMBER]
    galleries = []
    if member is not None and member.tenants:
        tenants = await Tenant.filter(
            platform=member.platform, external_id__in=list(member.tenants)
        ).order_by("name", "id")
        for tenant in tenants:
            count = await Image.filter(job__tenant_id=tenant.id).count()
            galleries.append(
                {
                    "platform": tenant.platform,
                    "external_id": tenant.external_id,
                    "name": tenant.name,
                    "count": count,
                }
            )
    return render.page(
        request,
        "index.html",
        providers=list(services.providers.values()),
        galleries=galleries,
    )


async def gallery(request: web.Request) -> web.Response:
    _member, tenant = await _tenant(request)
    filters, problems = listing.Filters.from_query(request.query)
    page = await listing.gallery_page(tenant, filters)
    models, users = await listing.choices(tenant)
    return render.page(
        request,
        "gallery.html",
        tenant=tenant,
        here=_gallery_path(request, tenant),
        filters=filters,
        problems=problems,
        page=page,
        models=models,
        users=users,
        link=lambda **changes: urlencode(filters.query(**changes)),
    )


async def _image_of(request: web.Request, tenant: Tenant) -> Image:
    image_id = listing.number(request.match_info["image"])
    image = None
    if image_id is not None:
        image = (
            await Image.filter(id=image_id, job__tenant_id=tenant.id)
            .select_related("job", "job__user")
            .first()
        )
    if image is None:
        raise web.HTTPNotFound(**_not_found(request))
    return image


def _refuse_expired(request: web.Request, image: Image) -> None:
    """410 with retention's words for an image whose job retention is deleting (its row goes right after its
    bytes; once it is gone the image answers 404 and its job's page says it expired)."""
    words = expired_words(image.job)
    if words is not None:
        response = render.error(request, 410, "Expired", words)
        raise web.HTTPGone(text=response.text, content_type="text/html")


async def _job_withholds(tenant: Tenant, job: Job, images: list[Image]) -> bool:
    """Whether the safety filter withholds anything of `job`: then nothing of it is made again."""
    if not (await preferences_of(tenant)).safety:
        return False
    return any(image.flagged for image in images) or await source_flagged(job.spec)


async def image_page(request: web.Request) -> web.Response:
    _member, tenant = await _tenant(request)
    image = await _image_of(request, tenant)
    _refuse_expired(request, image)
    hidden = bool(await listing.withheld(tenant, [image]))
    job = image.job
    siblings = await Image.filter(job_id=job.id)
    return render.page(
        request,
        "image.html",
        tenant=tenant,
        gallery=_gallery_path(request, tenant),
        image=image,
        job=job,
        spec=job.spec,
        hidden=hidden,
        can_again=job.kind in AGAIN_SPECS and not await _job_withholds(tenant, job, siblings),
        nonce=secrets.token_urlsafe(16),
    )


async def image_file(request: web.Request) -> web.StreamResponse:
    services: GalleryServices = request.config_dict[GALLERY]
    _member, tenant = await _tenant(request)
    image = await _image_of(request, tenant)
    _refuse_expired(request, image)
    if await listing.withheld(tenant, [image]):
        raise web.HTTPNotFound(**_not_found(request))
    try:
        data = await services.blobs.get(image.blob_key)
    except BlobNotFound:
        raise web.HTTPNotFound(**_not_found(request)) from None
    return web.Response(
        body=data,
        content_type="image/png",
        headers={
            "Cache-Control": "private, max-age=3600",
            "Content-Disposition": f'inline; filename="{image.id}.png"',
        },
    )


async def image_thumb(request: web.Request) -> web.StreamResponse:
    services: GalleryServices = request.config_dict[GALLERY]
    _member, tenant = await _tenant(request)
    image = await _image_of(request, tenant)
    _refuse_expired(request, image)
    if await listing.withheld(tenant, [image]):
        raise web.HTTPNotFound(**_not_found(request))
    try:
        data = await thumbs.thumbnail(services.blobs, image)
    except BlobNotFound:
        raise web.HTTPNotFound(**_not_found(request)) from None
    return web.Response(
        body=data, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )


async def _job_of(request: web.Request, tenant: Tenant) -> Job:
    job_id = request.match_info["job"]
    job = None
    if _JOB_ID.fullmatch(job_id):
        job = await Job.filter(id=job_id, tenant_id=tenant.id).select_related("user").first()
    if job is None:
        raise web.HTTPNotFound(**_not_found(request))
    return job


async def job_page(request: web.Request) -> web.Response:
    _member, tenant = await _tenant(request)
    job = await _job_of(request, tenant)
    images = await Image.filter(job_id=job.id).order_by("index").select_related("job")
    return render.page(
        request,
        "job.html",
        tenant=tenant,
        gallery=_gallery_path(request, tenant),
        job=job,
        spec=job.spec,
        images=images,
        hidden=await listing.withheld(tenant, images),
        live=job.status not in FINAL,
        expired=expired_words(job),
    )


async def job_preview(request: web.Request) -> web.Response:
    """The job's latest progress preview (a small JPEG, `jobs.events.store_preview`, kept for a while after the
    job), or 404. Like the chat bots' progress messages, a running job's preview is shown before the safety
    checker has seen the finished image: it is the latents' cheap colour approximation at 1/8 of the image's
    side. Once the job has ended, a job whose images the filter withholds has no preview either."""
    services: GalleryServices = request.config_dict[GALLERY]
    _member, tenant = await _tenant(request)
    job = await _job_of(request, tenant)
    preview = await events.latest_preview(services.redis, job.id)
    if preview is not None and job.status in FINAL:
        if await _job_withholds(tenant, job, await Image.filter(job_id=job.id)):
            preview = None
    if preview is None:
        raise web.HTTPNotFound(**_not_found(request))
    return web.Response(body=preview, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def job_events(request: web.Request) -> web.StreamResponse:
    """The job's events as Server-Sent Events, from the start of its stream until it ends, then `end` with
    its final status. Only progress and queue events are passed on (results are shown by the page itself, by
    the safety filter's rules); a comment every KEEPALIVE_S seconds keeps proxies from closing the stream."""
    services: GalleryServices = request.config_dict[GALLERY]
    _member, tenant = await _tenant(request)
    job = await _job_of(request, tenant)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    try:
        await _stream(services, response, job)
    except ConnectionResetError:  # the page was closed or reloaded
        pass
    return response


async def _stream(services: GalleryServices, response: web.StreamResponse, job: Job) -> None:
    key, last = events.stream_key(job.id), "0-0"
    # The record, not the stream, says when the job is over: workers save the final status before they
    # publish the terminal event, and a stream may have expired.
    while job.status not in FINAL:
        batches = await services.redis.xread({key: last}, block=KEEPALIVE_S * 1000, count=100)
        if not batches:
            await response.write(b": keepalive\n\n")
        for _key, entries in batches or ():
            for entry_id, fields in entries:
                last = entry_id
                name = _text(fields.get(b"event", b""))
                if name in ("queued", "progress"):
                    data = json.loads(fields.get(b"data", b"{}"))
                    await _send(response, name, {k: data[k] for k in PASSED_ON if k in data})
        job = await Job.get(id=job.id)
    await _send(response, "end", {"status": job.status.value})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _send(response: web.StreamResponse, event: str, data: dict) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


async def again(request: web.Request) -> web.StreamResponse:
    """Submit the job's spec again as a new job of the signed-in member (charged to them and their tenant like a
    chat command). The form's nonce makes the request id, so a double click or a resent form makes one job."""
    services: GalleryServices = request.config_dict[GALLERY]
    member, tenant = await _tenant(request)
    form = await request.post()
    if not member.csrf_ok(form.get("csrf")):  # type: ignore[arg-type]
        return render.error(
            request, 403, "Not submitted", "This form is out of date; reload the page and try again."
        )
    job = await _job_of(request, tenant)
    nonce = str(form.get("nonce", ""))
    images = await Image.filter(job_id=job.id)
    if (
        job.kind not in AGAIN_SPECS
        or not _NONCE.fullmatch(nonce)
        or await _job_withholds(tenant, job, images)
    ):
        return render.error(request, 400, "Not submitted", "This job cannot be made again from the gallery.")
    spec = AGAIN_SPECS[job.kind].model_validate(job.spec)
    user = await get_or_create_user(tenant, member.user_id, member.name)
    try:
        job_id = await services.submit(
            spec, tenant, user, f"gallery:{member.platform}:{member.user_id}:{nonce}"
        )
    except ApiError as refusal:  # a limit reached, a paused server, a ban: the words a chat command gets
        return render.error(request, refusal.status, "Not submitted", refusal.message)
    log.info(
        "gallery: %s user %s submitted job %s again as %s", member.platform, member.user_id, job.id, job_id
    )
    return render.redirect(f"{_gallery_path(request, tenant)}/jobs/{job_id}")
