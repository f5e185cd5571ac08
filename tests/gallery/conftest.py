"""The gallery's rig: real PostgreSQL and Redis, images made by a real worker on the tiny models, a real
`atelier api` process serving /gallery/, and the OAuth emulator playing Discord and Slack.

Who is who (the emulator's accounts):
- alice (Discord) is in guilds 1001 "Lighthouse Club" and 1002 "Paper Cranes" (both Atelier tenants) and in
  1003, which does not use Atelier;
- bob (Discord) is in 1001 and 2001 "Secret Garden", whose images alice must never see;
- dave (Slack) is in workspace T0GALLERY "Acme".
Guild 1001 holds more images than one page, a flagged one (the `tiny-strict` preset flags every image) and a
prompt that is HTML. The rig is built once per module; tests that change something put it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest_asyncio
from aiohttp import web
from redis.asyncio import Redis

from atelier.runtime import Runtime
from atelier.settings import Settings
from jobs.queue import enqueue
from jobs.specs import ReplyTarget, imagine_spec
from storage.models import Image, Job, Tenant, get_or_create_tenant, get_or_create_user
from tests.gallery.oauth_emulator import DiscordAccount, OAuthEmulator, SlackAccount
from tests.support import atelier_env, free_port, redis_url, run_burst_worker, service_env, stop_process

REDIS_URL = redis_url(14)  # this area's database on the run's Redis; flushed when the rig starts
QUEUE = "atelier:gallery-test"
CLIENT_ID = "gallery-test-client"
API_START_S = 90
XSS_PROMPT = '<script>document.title="pwned"</script> a fox <b>bold</b>'

GUILDS = {"1001": "Lighthouse Club", "1002": "Paper Cranes", "2001": "Secret Garden"}
# (guild, member, prompt, model, count); the filler fills guild 1001 past one page
JOBS = [
    ("1001", "alice", "a red fox in the snow", "tiny", 1),
    ("1001", "carol", "a lighthouse at dawn", "tiny", 1),
    ("1001", "alice", "a forbidden orchard", "tiny-strict", 1),
    ("1001", "carol", XSS_PROMPT, "tiny", 1),
    *[("1001", ("carol", "erin")[n % 2], f"filler landscape number {n}", "tiny", 4) for n in range(6)],
    ("1002", "alice", "a paper crane on a desk", "tiny", 1),
    ("1002", "alice", "a wide harbour panorama", "tiny", 1),  # 512x384, for thumbnails
    ("2001", "bob", "a secret garden with a fox", "tiny", 1),
    ("T0GALLERY", "dave", "an acme rocket", "tiny", 1),
]
ACCOUNT_IDS = {"alice": "401", "bob": "402", "carol": "403", "erin": "404", "dave": "U0DAVE"}


@dataclass
class Rig:
    base: str  # the API's origin, http://127.0.0.1:PORT
    emulator: OAuthEmulator
    runtime: Runtime
    client_secret: str
    api_log: Path
    out: Path  # where screenshots go (the repo's ignored out/)
    env: dict[str, str] = field(default_factory=dict)  # the API process's ATELIER_* variables
    root: Path = Path()
    xss_prompt: str = XSS_PROMPT
    image_ids: dict[str, int] = field(default_factory=dict)  # prompt -> its first image's id
    job_ids: dict[str, str] = field(default_factory=dict)  # prompt -> job id

    async def run_jobs(self) -> None:
        """Run a burst worker in this process until the queue is empty."""
        await run_burst_worker(self.runtime.worker_services(), QUEUE, poll_delay=0.01)

    @contextlib.asynccontextmanager
    async def another_api(self, **env: str) -> AsyncIterator[str]:
        """A second `atelier api` process on the same services (with `env` added); yields its origin."""
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        self.emulator.redirect_uris |= {f"{base}/gallery/callback/discord", f"{base}/gallery/callback/slack"}
        log = self.root / f"api-{port}.log"
        api = _start_api(self.root, self.env | {"ATELIER_API_PORT": str(port), **env}, log)
        try:
            await _wait_for(api, f"{base}/healthz", log)
            yield base
        finally:
            stop_process(api)

    async def tenant(self, external_id: str) -> Tenant:
        platform = "slack" if external_id.startswith("T") else "discord"
        return await Tenant.get(platform=platform, external_id=external_id)

    async def sign_in(
        self, http: aiohttp.ClientSession, platform: str, account: str
    ) -> aiohttp.ClientResponse:
        """The whole OAuth dance with a plain HTTP client (no redirect followed by itself); the final answer."""
        self.emulator.signed_in[platform] = account
        start = await http.get(f"{self.base}/gallery/signin/{platform}", allow_redirects=False)
        assert start.status == 302, await start.text()
        consent = await http.get(start.headers["Location"], allow_redirects=False)
        assert consent.status == 200, await consent.text()
        params = dict(parse_qsl(urlsplit(start.headers["Location"]).query))
        approved = await http.post(
            start.headers["Location"].split("?")[0], data=params, allow_redirects=False
        )
        assert approved.status == 302
        return await http.get(approved.headers["Location"], allow_redirects=False)


async def _seed(runtime: Runtime, settings: Settings) -> tuple[dict[str, int], dict[str, str]]:
    tiers = settings.load_tiers()
    tenants = {gid: await get_or_create_tenant("discord", gid, name) for gid, name in GUILDS.items()}
    tenants["T0GALLERY"] = await get_or_create_tenant("slack", "T0GALLERY", "Acme")
    job_ids: dict[str, str] = {}
    for n, (where, who, prompt, model, count) in enumerate(JOBS):
        tenant = tenants[where]
        user = await get_or_create_user(tenant, ACCOUNT_IDS[who], who)
        size = "512x384" if "panorama" in prompt else None
        spec = imagine_spec(
            runtime.registry, prompt=prompt, model=model, seed=100 + n, count=count, size=size, tiny=True
        )
        queued = await enqueue(
            runtime.redis,
            spec,
            request_id=f"gallery-test:{n}",
            reply_target=ReplyTarget(platform=tenant.platform),
            queue_name=QUEUE,
            tenant=tenant,
            user=user,
            tiers=tiers,
        )
        job_ids[prompt] = queued.job_id
        if n % 3 == 2:  # a member may have 3 unfinished jobs
            await run_burst_worker(runtime.worker_services(), QUEUE, poll_delay=0.01)
    await run_burst_worker(runtime.worker_services(), QUEUE, poll_delay=0.01)
    image_ids = {}
    for prompt, job_id in job_ids.items():
        job = await Job.get(id=job_id)
        assert job.status == "succeeded", f"{prompt}: {job.status} {job.error}"
        image_ids[prompt] = (await Image.filter(job_id=job_id).order_by("index").first()).id
    # One image from a known day, for the date filter (its record is the rig's to set, as a migration would).
    await Image.filter(id=image_ids["a lighthouse at dawn"]).update(
        created_at=datetime(2026, 1, 15, 12, tzinfo=UTC)
    )
    return image_ids, job_ids


@pytest_asyncio.fixture(scope="module")
async def rig(tmp_path_factory, models_dir: Path, postgres_databases) -> AsyncIterator[Rig]:
    root = tmp_path_factory.mktemp("gallery")
    flush = Redis.from_url(REDIS_URL)
    await flush.flushdb()
    await flush.aclose()
    database_url = await postgres_databases("atelier_test_gallery")
    settings = Settings(
        data_dir=root / "data",
        tiny_models=True,
        model_cache_dir=models_dir,
        redis_url=REDIS_URL,
        database_url=database_url,
        blob_url=str(root / "blobs"),
        queue_name=QUEUE,
    )
    client_secret = "emulated-secret-" + secrets.token_hex(8)
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}"
    emulator = OAuthEmulator(
        client_id=CLIENT_ID,
        client_secret=client_secret,
        redirect_uris={f"{base}/gallery/callback/discord", f"{base}/gallery/callback/slack"},
        discord_accounts={
            "alice": DiscordAccount(
                "401",
                "alice",
                [("1001", "Lighthouse Club"), ("1002", "Paper Cranes"), ("1003", "Not Atelier")],
            ),
            "bob": DiscordAccount("402", "bob", [("1001", "Lighthouse Club"), ("2001", "Secret Garden")]),
        },
        slack_accounts={"dave": SlackAccount("U0DAVE", "dave", "T0GALLERY", "Acme")},
    )
    runner = web.AppRunner(emulator.app(), access_log=None)
    await runner.setup()
    emulator_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", emulator_port).start()
    emulated = f"http://127.0.0.1:{emulator_port}"
    secret_file = root / "discord-client-secret"
    secret_file.write_text(client_secret + "\n")
    env = service_env(
        root, models_dir=models_dir, redis_url=REDIS_URL, database_url=database_url, queue_name=QUEUE
    )
    env |= {
        "ATELIER_API_HOST": "127.0.0.1",
        "ATELIER_API_PORT": str(api_port),
        "ATELIER_DISCORD_CLIENT_ID": CLIENT_ID,
        "ATELIER_DISCORD_CLIENT_SECRET_FILE": str(secret_file),
        "ATELIER_DISCORD_API_BASE": f"{emulated}/api/v10",
        "ATELIER_DISCORD_AUTHORIZE_URL": f"{emulated}/oauth2/authorize",
        "ATELIER_SLACK_CLIENT_ID": CLIENT_ID,
        "ATELIER_SLACK_CLIENT_SECRET": client_secret,
        "ATELIER_SLACK_API_BASE": f"{emulated}/api/",
        "ATELIER_SLACK_AUTHORIZE_URL": f"{emulated}/openid/connect/authorize",
        "ATELIER_LOG_LEVEL": "DEBUG",
    }
    out = Path(__file__).parents[2] / "out"
    out.mkdir(exist_ok=True)
    api_log = root / "api.log"
    try:
        async with Runtime.open(settings) as runtime:
            image_ids, job_ids = await _seed(runtime, settings)
            api = _start_api(root, env, api_log)
            try:
                await _wait_for(api, f"{base}/healthz", api_log)
                yield Rig(
                    base,
                    emulator,
                    runtime,
                    client_secret,
                    api_log,
                    out,
                    env,
                    root,
                    image_ids=image_ids,
                    job_ids=job_ids,
                )
            finally:
                stop_process(api)
    finally:
        await runner.cleanup()


def _start_api(root: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("w") as log:
        command = [sys.executable, "-m", "atelier", "api"]
        return subprocess.Popen(command, cwd=root, env=atelier_env(env), stdout=log, stderr=subprocess.STDOUT)


def _tail(path: Path) -> str:
    return path.read_text()[-3000:]


async def _wait_for(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + API_START_S
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"atelier api did not start:\n{_tail(log)}")
            await asyncio.sleep(0.1)
