"""What the gallery's handlers use: built once by `gallery_app` and kept on its aiohttp app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from arq.connections import ArqRedis

from atelier.settings import Settings
from bots.api.gallery.oauth import Provider
from bots.api.gallery.sessions import Sessions
from storage.blobs import BlobStore
from storage.models import Tenant, User

# (spec, tenant, user, request_id) -> the new job's id; refusals are bots.api.errors.ApiError.
Submit = Callable[[object, Tenant, User, str], Awaitable[str]]


@dataclass
class GalleryServices:
    settings: Settings
    redis: ArqRedis
    blobs: BlobStore
    submit: Submit
    providers: dict[str, Provider]
    root: str = "/gallery"  # where the sub-app is mounted
    sign_in_limit: tuple[float, int] | None = None  # sign-ins per second and burst, per client address
    trusted_proxies: tuple = ()  # whose X-Forwarded-For names the client (bots.api.auth.client_address)
    sessions: Sessions = field(init=False)
    http: aiohttp.ClientSession | None = None  # for the platforms' OAuth calls, opened with the app

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.redis)


GALLERY = web.AppKey("gallery", GalleryServices)
MEMBER = web.RequestKey(
    "atelier_gallery_member", object
)  # the signed-in Member, or None (auth.session_member)
