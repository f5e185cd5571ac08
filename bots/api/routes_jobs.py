"""A job's state, its cancel and its live events: `GET /v1/jobs/{id}`, `DELETE /v1/jobs/{id}`,
`GET /v1/jobs/{id}/events`. A job of another tenant is answered as if it did not exist (404)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import web

from bots.api.errors import ApiError, not_found
from bots.api.openapi import AUTH_ERRORS, add_paths, error, json_body
from bots.api.services import ApiServices, caller_of, services_of
from bots.api.views import LIVE, image_views, job_view
from bots.api.webhooks import job_ended
from jobs import events
from quotas.admin_jobs import JobAdmin
from storage.models import Job, User

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies from closing a quiet stream
JOB_PATH = "/v1/jobs/{job_id}"


STREAMS: web.AppKey[set[asyncio.Queue]] = web.AppKey("atelier_api_event_streams", set)
CLOSING = ("closing", {})  # put on every open stream's queue when the server stops


def add_routes(app: web.Application) -> None:
    app[STREAMS] = set()
    app.on_shutdown.append(_close_streams)
    app.router.add_get(JOB_PATH, get_job)
    app.router.add_delete(JOB_PATH, cancel_job)
    app.router.add_get(JOB_PATH + "/events", job_events)
    add_paths(app, PATHS)


async def _close_streams(app: web.Application) -> None:
    """On shutdown: end every open event stream, so stopping does not wait for followers to leave."""
    for queue in list(app[STREAMS]):
        queue.put_nowait(CLOSING)


async def tenant_job(request: web.Request) -> Job:
    """The job named in the path if it is the caller's tenant's; 404 `job_not_found` otherwise."""
    job_id = request.match_info["job_id"]
    job = None
    if len(job_id) <= 64:
        job = await Job.get_or_none(id=job_id, tenant_id=caller_of(request).tenant.id)
    if job is None:
        raise not_found("job", job_id)
    return job


async def get_job(request: web.Request) -> web.Response:
    return web.json_response(await job_view(services_of(request), await tenant_job(request)))


async def cancel_job(request: web.Request) -> web.Response:
    """Cancel through the chat bots' path (`quotas.admin_jobs`): a queued job is cancelled and refunded at once
    (200), a running one stops after its current step (202), a finished one is left alone (409)."""
    services = services_of(request)
    job = await tenant_job(request)
    owner = None if job.user_id is None else await User.get_or_none(id=job.user_id)  # type: ignore[attr-defined]
    outcome = await JobAdmin(services.redis, [services.queue_name]).cancel_job(
        job.id, by_user=owner, as_admin=owner is None, tenant=caller_of(request).tenant
    )
    if outcome.outcome == "finished":
        raise ApiError(409, "job_finished", outcome.message)
    if outcome.outcome == "cancelled":
        # Followers learn at once; the worker that drops the job from the queue says so again (harmless:
        # a follower stops at the first terminal event).
        await events.publish(services.redis, job.id, "cancelled", message=outcome.message)
        await job_ended(job.id)  # its webhooks now, not when a worker drops it from the queue
    body = {"id": job.id, "outcome": outcome.outcome, "status": outcome.status, "message": outcome.message}
    return web.json_response(body, status=200 if outcome.outcome == "cancelled" else 202)


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the job's event stream (`jobs.events`) from its start, as the chat repliers get it:
    `queued` (position, eta_s), `progress` (step, total), `note` (an enhance's faces), then one of `result`
    (images, with their URLs), `failed` or `cancelled` (message), and last `end`: the job as
    `GET /v1/jobs/{id}` shows it. A job whose stream is gone (a day after it ran) gets `end` alone. A server that stops closes its streams without
    `end`: follow again (on another process), and the job's events come again from the start."""
    services = services_of(request)
    job = await tenant_job(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    try:
        await _stream(services, job, response, request.app[STREAMS])
    except ConnectionResetError:
        log.info("job %s: its events' follower went away", job.id)
    return response


async def _stream(
    services: ApiServices, job: Job, response: web.StreamResponse, streams: set[asyncio.Queue]
) -> None:
    if job.status not in LIVE and not await services.redis.exists(events.stream_key(job.id)):
        await response.write(_event("end", await job_view(services, job)))  # its stream expired
        return
    queue: asyncio.Queue[tuple[str, dict] | None] = asyncio.Queue()
    streams.add(queue)

    async def pump() -> None:
        async for item in events.follow(services.redis, job.id):
            await queue.put(item)
        await queue.put(None)

    follower = asyncio.create_task(pump())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                await job.refresh_from_db()
                if job.status not in LIVE and queue.empty():
                    break  # ended without a terminal event on its stream (expired, or reconciled)
                await response.write(b": keepalive\n\n")
                continue
            if item is None:
                break
            if item is CLOSING:
                return
            name, data = item
            if name == "result":
                await job.refresh_from_db()
                data = {"images": await image_views(job)}
            await response.write(_event(name, data))
    finally:
        streams.discard(queue)
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    await job.refresh_from_db()
    await response.write(_event("end", await job_view(services, job)))


def _event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


JOB_ID = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
NOT_FOUND = {"404": error("job_not_found: no such job, or another tenant's")}
PATHS = {
    JOB_PATH: {
        "get": {
            "summary": "A job: status (queued, running, succeeded, failed, cancelled), position, ETA, progress, images",
            "parameters": JOB_ID,
            "responses": {"200": json_body({"$ref": "#/components/schemas/Job"}), **NOT_FOUND, **AUTH_ERRORS},
        },
        "delete": {
            "summary": "Cancel a job: 200 cancelled (it was queued), 202 stopping (it is running)",
            "parameters": JOB_ID,
            "responses": {
                "200": json_body({"type": "object"}, "Cancelled and refunded; it will not run"),
                "202": json_body({"type": "object"}, "Running: it stops after its current step"),
                "409": error("job_finished: it had already ended"),
                **NOT_FOUND,
                **AUTH_ERRORS,
            },
        },
    },
    JOB_PATH + "/events": {
        "get": {
            "summary": "The job's events as Server-Sent Events, from its start to `end`",
            "parameters": JOB_ID,
            "responses": {
                "200": {"description": "An event stream", "content": {"text/event-stream": {}}},
                **NOT_FOUND,
                **AUTH_ERRORS,
            },
        }
    },
}
