"""`GET /v1/images/{id}`: an image's PNG bytes, to its tenant's keys only (another tenant's: 404), unless the
safety filter withholds it (403 `image_withheld`, see `bots.api.safety`) or retention deleted it: 410
`image_expired` while its row remains, 404 afterwards (`GET /v1/jobs/{id}` then says `images_expired`)."""

from __future__ import annotations

from aiohttp import web

from bots.api.errors import ApiError, not_found
from bots.api.openapi import AUTH_ERRORS, add_paths, error
from bots.api.safety import withheld_images
from bots.api.services import caller_of, services_of
from jobs.retention import expired_words
from storage.blobs import BlobNotFound
from storage.models import Image, Job


def add_routes(app: web.Application) -> None:
    app.router.add_get(r"/v1/images/{image_id}", get_image)
    add_paths(app, PATHS)


async def get_image(request: web.Request) -> web.Response:
    raw = request.match_info["image_id"]
    tenant = caller_of(request).tenant
    image = None
    if raw.isascii() and raw.isdigit() and len(raw) <= 12:
        image = await Image.get_or_none(id=int(raw))
    job = None if image is None else await Job.get_or_none(id=image.job_id)  # type: ignore[attr-defined]
    if image is None or job is None or job.tenant_id != tenant.id:  # type: ignore[attr-defined]
        raise not_found("image", raw)
    if image.id in await withheld_images(job, [image]):
        raise ApiError(
            403,
            "image_withheld",
            "the safety checker flagged this image, and this server's safety filter withholds flagged images "
            "(an admin can turn it off with /atelier safety off)",
        )
    # Weak: the digest names the pixels (jobs.lifecycle._store), and a job run twice signs its image anew.
    etag = f'W/"{image.sha256}"'
    if request.headers.get("If-None-Match") in (etag, f'"{image.sha256}"'):
        return web.Response(status=304, headers={"ETag": etag})
    expired = expired_words(job)
    if expired is not None:  # retention is deleting it (the row goes right after the bytes)
        raise ApiError(410, "image_expired", expired)
    try:
        data = await services_of(request).blobs.get(image.blob_key)
    except BlobNotFound:
        raise ApiError(410, "image_gone", "this image's bytes are no longer stored") from None
    return web.Response(
        body=data,
        content_type="image/png",
        headers={"ETag": etag, "Cache-Control": "private, max-age=86400"},
    )


PATHS = {
    "/v1/images/{image_id}": {
        "get": {
            "summary": "An image's PNG bytes",
            "parameters": [
                {"name": "image_id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "responses": {
                "200": {"description": "The PNG", "content": {"image/png": {}}},
                "304": {"description": "Not modified (If-None-Match matched the ETag, the sha256)"},
                "403": error("image_withheld: flagged by the safety checker, and the filter is on"),
                "404": error("image_not_found: no such image, or another tenant's"),
                "410": error(
                    "image_gone: its bytes are no longer stored; image_expired: deleted by retention"
                ),
                **AUTH_ERRORS,
            },
        }
    }
}
