"""The `atelier` command line: generate from a terminal, run workers, migrate the database.

`imagine` and `demo` go through the same path as a chat command: validate, record, enqueue on arq, and wait for a
worker, starting one in this process when none serves the queue. Progress goes to stderr; the last lines on
stdout are the paths of the images, one per line. Bad input exits with status 2 and a one-line message before
anything is enqueued; a request that a quota, a pause or a ban refuses exits with status 3 and a one-line reason
(the limit, the usage, when it resets); a job that fails exits with status 1. Requests count against
`--tenant PLATFORM:ID --user ID` (default `cli:local`, user `local`); `atelier admin …` manages quotas.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import sys
import uuid
from collections.abc import Coroutine, Sequence
from pathlib import Path

from atelier.settings import Settings
from quotas.errors import QuotaRefused

DEMO_PROMPT = "a lighthouse on a cliff at dawn, watercolour"
CLI_TENANT, CLI_USER = "cli:local", "local"  # the machine's owner, on the cli platform's starting tier


class UsageError(Exception):
    """Bad input from the person at the terminal: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atelier", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    imagine = sub.add_parser("imagine", help="generate images from a prompt, through the queue")
    imagine.add_argument("prompt")
    _add_generation_options(imagine)
    _add_tenant_options(imagine)
    imagine.add_argument(
        "--lora",
        action="append",
        metavar="NAME[:WEIGHT]",
        help="apply a LoRA from ATELIER_LORA_DIR at a weight (default 1), e.g. ink:0.8; repeatable",
    )
    imagine.add_argument(
        "--enhance-faces", action="store_true", help="restore faces after generation (GFPGAN by default)"
    )
    imagine.add_argument(
        "--image",
        type=Path,
        help="a starting image: image-to-image, the result follows its layout and colours (it sets the size; "
        "the same job as `atelier vary IMAGE --prompt PROMPT` and the chat bots' /imagine with an image)",
    )
    imagine.add_argument(
        "--strength",
        type=float,
        help="with --image: how far from it to go, above 0, at most 1 (default: 0.6)",
    )

    demo = sub.add_parser(
        "demo", help="imagine a fixed prompt with the tiny model, offline, on embedded defaults"
    )
    demo.add_argument("--out", type=Path, default=Path("out"), help="folder for the images (default: out)")
    _add_tenant_options(demo)

    worker = sub.add_parser("worker", help="run a GPU worker that serves the queue until stopped")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument(
        "--queues",
        default="images",
        metavar="images,train",
        help="which queues to serve: images (generation), train (LoRA training), or both; training holds the "
        "GPU for its whole run, so a worker serving both makes image jobs wait meanwhile (default: images)",
    )

    sub.add_parser("migrate", help="apply pending database migrations and exit")

    sub.add_parser("slack", help="run the Slack app (Socket Mode with ATELIER_SLACK_APP_TOKEN, else HTTP)")

    from bots.discord.guide import HELP as DISCORD_HELP  # plain text; discord.py is imported only to run

    sub.add_parser(
        "discord",
        help="run the Discord bot (/imagine, buttons); needs ATELIER_DISCORD_TOKEN",
        description=DISCORD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for group in _groups():
        group.add_parsers(sub)
    return parser


# Subcommand groups kept in their own modules (one per feature area). Each module has
# `add_parsers(sub)` and `COMMANDS: dict[str, async (settings, args) -> int]`.
GROUP_MODULES: tuple[str, ...] = (
    "atelier.cli_edit",
    "atelier.cli_admin",
    "atelier.cli_enhance",
    "atelier.cli_lora",
    "atelier.cli_serve",
    "atelier.cli_doctor",
)


def _groups() -> list:
    import importlib

    return [importlib.import_module(name) for name in GROUP_MODULES]


def _add_generation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model preset (default: the registry's default)")
    p.add_argument("--seed", type=int, help="seed of the first image; image i uses seed+i (default: random)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", help="WIDTHxHEIGHT, each a multiple of 8")
    size.add_argument("--ar", dest="aspect", help="aspect ratio W:H at the model's default pixel count")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    p.add_argument("--count", type=int, help="number of images (default: 1)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--negative", default="", help="what the image should not contain")
    p.add_argument("--out", type=Path, default=Path("out"), help="folder for the images (default: out)")


def _add_tenant_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tenant",
        default=CLI_TENANT,
        metavar="PLATFORM:ID",
        help=f"whose quota the request counts against, e.g. discord:1234 (default: {CLI_TENANT})",
    )
    p.add_argument("--user", default=CLI_USER, metavar="ID", help=f"the person asking (default: {CLI_USER})")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    if args.command == "demo":
        settings = settings.model_copy(update={"tiny_models": True})
    from atelier.observability import setup_logging

    setup_logging(settings.log_level)
    if args.command != "worker":
        # A command's own progress bar tells the story; the in-process worker's per-job log lines would repeat it.
        logging.getLogger("arq").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        commands = dict(_COMMANDS)
        for group in _groups():
            commands.update(group.COMMANDS)
        return asyncio.run(commands[args.command](settings, args))
    except UsageError as exc:
        print(f"atelier: error: {exc}", file=sys.stderr)
        return 2
    except QuotaRefused as exc:
        print(f"atelier: refused: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


async def _imagine(settings: Settings, args: argparse.Namespace) -> int:
    if getattr(args, "image", None) is not None:
        return await _imagine_from_image(settings, args)
    if getattr(args, "strength", None) is not None:
        raise UsageError("--strength needs --image")
    # Validate before any service starts, so bad input costs nothing and leaves nothing behind.
    from bots.commands import parse_lora
    from engine.lora import LoraLibrary, check_loras
    from engine.registry import Registry
    from jobs.specs import imagine_spec
    from quotas.policy import parse_tenant_ref

    try:
        tenant = parse_tenant_ref(args.tenant)
        if not args.user:
            raise ValueError("--user needs the id of the person asking")
        loras = [parse_lora(text) for text in getattr(args, "lora", None) or []]
        spec = imagine_spec(
            Registry.load(settings.models_file),
            prompt=args.prompt,
            negative=args.negative,
            model=args.model,
            size=args.size,
            aspect=args.aspect,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            count=args.count,
            tiny=settings.tiny_models,
            random_seed=secrets.randbelow(2**32),
            enhance_faces=getattr(args, "enhance_faces", False),
        )
        check_loras(loras)  # count, repeats, weights; the names need the tenant's LoRAs, read below
        library = LoraLibrary(settings.loras_dir)
        if not _database_exists(settings.database_url):
            check_loras(loras, library)  # no database yet, so no tenant has LoRAs of its own
    except ValueError as exc:
        raise UsageError(exc) from None
    from atelier.runtime import Runtime

    async with Runtime.open(settings) as runtime:
        if loras:
            spec = await _with_tenant_loras(spec, loras, tenant, library)
        return await _run_and_wait(runtime, spec, args.out, tenant, args.user)


async def _imagine_from_image(settings: Settings, args: argparse.Namespace) -> int:
    """`atelier imagine PROMPT --image PATH`: refuse what image-to-image cannot take, then run it as `vary`."""
    from atelier.cli_edit import _vary
    from engine.edit_requests import DEFAULT_VARIATION_STRENGTH

    for flag, given in (
        ("--size", args.size),
        ("--ar", args.aspect),
        ("--lora", args.lora),
        ("--enhance-faces", args.enhance_faces),
    ):
        if given:
            raise UsageError(
                f"{flag} does not work with --image (the image sets the size; no LoRAs or faces)"
            )
    if args.strength is None:
        args.strength = DEFAULT_VARIATION_STRENGTH
    return await _vary(settings, args)


def _database_exists(url: str) -> bool:
    """False only for a SQLite file not created yet (nothing has run here): what can be refused without it is."""
    path = url.removeprefix("sqlite://") if url.startswith("sqlite://") else None
    return path is None or path == ":memory:" or Path(path).exists()


async def _with_tenant_loras(spec, loras, tenant_ref: tuple[str, str], library):
    """`spec` with its LoRAs as the tenant sees them: its own trained ones (scoped names) or the shared folder's;
    UsageError naming a LoRA the tenant does not have."""
    from engine.lora import check_loras
    from jobs.training import tenant_loras
    from storage.models import get_or_create_tenant

    view = await tenant_loras(await get_or_create_tenant(*tenant_ref), library)
    try:
        check_loras(loras, view)
    except ValueError as exc:
        raise UsageError(exc) from None
    return spec.model_copy(update={"loras": [(view.spec_name(name), float(w)) for name, w in loras]})


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    args.prompt, args.negative, args.model, args.seed = DEMO_PROMPT, "", None, 1234
    args.size = args.aspect = args.steps = args.guidance = args.count = None
    return await _imagine(settings, args)


def read_image_file(path: Path, what: str = "the image"):  # -> PIL.Image.Image (Pillow is imported lazily)
    """An image file given on the command line, decoded and normalised to RGB, or a UsageError saying why it
    cannot be used. Runs before any service opens, so bad input leaves nothing behind."""
    from jobs.inputs import MAX_INPUT_BYTES, InputImageError, read_image

    try:
        if path.stat().st_size > MAX_INPUT_BYTES:  # refuse before reading a huge file into memory
            raise UsageError(
                f"{what} {path} is {path.stat().st_size / 2**20:.1f} MiB; "
                f"the limit is {MAX_INPUT_BYTES / 2**20:.0f} MiB"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        return read_image(data, name=f"{what} {path}")
    except InputImageError as exc:
        raise UsageError(exc) from None


async def _run_and_wait(
    runtime, spec, out_dir: Path, tenant_ref: tuple[str, str] = ("cli", "local"), user_id: str = CLI_USER
) -> int:
    from jobs.queue import enqueue
    from jobs.replier import relay
    from jobs.specs import ReplyTarget
    from jobs.terminal import TerminalReplier
    from jobs.worker import create_worker
    from quotas.tiers import Tiers
    from storage.models import Job, get_or_create_tenant, get_or_create_user

    settings = runtime.settings
    tenant = await get_or_create_tenant(*tenant_ref)
    queued = await enqueue(
        runtime.redis,
        spec,
        request_id=f"cli:{uuid.uuid4()}",
        reply_target=ReplyTarget(platform="cli"),
        queue_name=settings.queue_name,
        tenant=tenant,
        user=await get_or_create_user(tenant, user_id),
        tiers=Tiers.load(settings.tiers_file),
    )

    def local_worker():
        return create_worker(
            runtime.worker_services(),
            queue_name=settings.queue_name,
            poll_delay=settings.poll_delay,
            job_timeout=settings.job_timeout,
            max_tries=settings.max_tries,
            handle_signals=False,
            only_jobs={queued.job_id},
        )

    terminal = TerminalReplier(runtime.blobs, out_dir)
    job = await Job.get(id=queued.job_id)
    await while_serving(runtime, settings.queue_name, local_worker, relay(runtime.redis, job, terminal))
    if terminal.error is not None:
        print(f"atelier: job {queued.job_id} failed: {terminal.error}", file=sys.stderr)
        return 1
    for path in terminal.paths:
        print(path)
    return 0


async def while_serving(runtime, queue_name: str, local_worker, waiting: Coroutine) -> None:
    """Await `waiting` (following a job) while making sure some worker serves `queue_name`: whenever no worker's
    heartbeat is seen, `local_worker()` (a worker for this command's own job only, see jobs.worker's
    `OwnJobsWorker`) runs here until that job has run. Checking again every heartbeat period covers a worker
    that dies, or a stale heartbeat, while we wait."""
    from jobs.heartbeat import HEARTBEAT_TTL_S, live_workers

    workers: list = []

    async def serve_if_unserved(serving: asyncio.Task | None) -> asyncio.Task | None:
        if (serving is None or serving.done()) and await live_workers(runtime.redis, queue_name) == 0:
            workers.append(local_worker())
            return asyncio.create_task(workers[-1].async_run())
        return serving

    # The first check comes before following starts: building a worker imports torch, which blocks the loop
    # for seconds, and a follower connecting to Redis meanwhile would time out.
    serving = await serve_if_unserved(None)
    follower = asyncio.ensure_future(waiting)
    try:
        while not follower.done():
            await asyncio.wait({follower}, timeout=HEARTBEAT_TTL_S)
            if not follower.done():
                serving = await serve_if_unserved(serving)
        await follower
    finally:
        follower.cancel()
        if serving is not None:
            # Our job is done. A local worker that took it is finishing it (arq removes it from the queue
            # after the result is out): wait for that. One that never took it (a real worker did) would wait
            # for it forever: stop it.
            if not serving.done() and not workers[-1].started_any():
                import signal

                workers[-1].handle_sig(signal.SIGTERM)
            with contextlib.suppress(asyncio.CancelledError):
                await serving


async def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from atelier.observability import start_http
    from atelier.runtime import Runtime
    from jobs.worker import create_worker

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if not queues or set(queues) - {"images", "train"}:
        raise UsageError(f"--queues takes images, train or images,train (got {args.queues!r})")
    async with Runtime.open(settings) as runtime:
        repliers = _platform_repliers(settings, runtime)
        services = runtime.worker_services(repliers=repliers)
        workers = []
        if "images" in queues:
            workers.append(
                create_worker(
                    services,
                    queue_name=settings.queue_name,
                    poll_delay=settings.poll_delay,
                    max_jobs=settings.max_jobs,
                    job_timeout=settings.job_timeout,
                    max_tries=settings.max_tries,
                    burst=args.burst,
                )
            )
        if "train" in queues:
            workers.append(create_train_worker(settings, services, burst=args.burst))
        if len(workers) > 1:
            # Each arq worker installs its own SIGINT/SIGTERM handler, and the last one wins: pass signals to all.
            import signal

            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, lambda s=signum: [w.handle_sig(s) for w in workers])
        http = None
        if settings.metrics_port:
            http = await start_http(settings.metrics_host, settings.metrics_port, runtime.services_answer)
        try:
            # arq stops a worker on SIGINT/SIGTERM by cancelling its main task (running jobs are handed back):
            # that is this command's normal end, not an error.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*(worker.async_run() for worker in workers))
        finally:
            for worker in workers:
                await worker.close()
            if http is not None:
                await http.cleanup()
            for replier in repliers.values():
                close = getattr(replier, "aclose", None)
                if close is not None:
                    await close()
    return 0


def create_train_worker(
    settings: Settings, services, *, burst: bool, handle_signals: bool = True, only_jobs=None
):
    """A worker of the training queue (ATELIER_TRAIN_QUEUE_NAME), its checkpoints under `<data dir>/training`;
    `only_jobs` as in `jobs.worker.create_worker`."""
    from jobs.worker import TrainWorkerSettings, create_worker

    return create_worker(
        services,
        queue_name=settings.train_queue_name,
        poll_delay=settings.poll_delay,
        max_jobs=TrainWorkerSettings.max_jobs,
        job_timeout=settings.train_job_timeout,
        max_tries=settings.max_tries,
        burst=burst,
        handle_signals=handle_signals,
        functions=TrainWorkerSettings.functions,
        training_dir=settings.data_dir / "training",
        only_jobs=only_jobs,
    )


def _platform_repliers(settings: Settings, runtime) -> dict:  # runtime: Runtime (imported lazily)
    """The chat platforms' repliers for a worker: each one whose bot token is configured."""
    repliers: dict = {}
    if settings.discord_token is not None:
        from bots.discord.editclock import EditClock
        from bots.discord.replier import DiscordReplier
        from bots.discord.rest import DiscordRest

        rest = DiscordRest(settings.secret("discord_token") or "", settings.discord_api_base)
        repliers["discord"] = DiscordReplier(rest, runtime.blobs, EditClock(runtime.redis))
    if settings.slack_bot_token is not None:
        from bots.slack.client import web_client
        from bots.slack.replier import SlackReplier

        client = web_client(settings.secret("slack_bot_token"), _slack_api_base(settings))
        repliers["slack"] = SlackReplier(client, runtime.blobs, runtime.redis)
    return repliers


def _slack_api_base(settings: Settings) -> str:
    base = settings.slack_api_base
    return base if base.endswith("/") else base + "/"


async def _slack(settings: Settings, args: argparse.Namespace) -> int:
    from atelier.observability import start_http
    from atelier.runtime import Runtime
    from bots.slack.app import SlackConnection, run
    from bots.slack.config import SlackConfig
    from bots.slack.services import SlackServices

    try:
        config = SlackConfig(
            bot_token=settings.secret("slack_bot_token") or "",
            signing_secret=settings.secret("slack_signing_secret"),
            app_token=settings.secret("slack_app_token"),
            api_base=settings.slack_api_base,
            host=settings.slack_host,
            port=settings.slack_port,
            admins=frozenset(settings.slack_admins),
            reactions=dict(settings.slack_reactions),
        )
    except ValueError as exc:
        raise UsageError(exc) from None

    async with Runtime.open(settings) as runtime:
        from quotas.tiers import Tiers

        connection = SlackConnection()
        http = None
        if settings.metrics_port:

            async def healthy() -> bool:
                return await runtime.services_answer() and await connection.up()

            http = await start_http(settings.metrics_host, settings.metrics_port, healthy)
        services = SlackServices(
            redis=runtime.redis,
            registry=runtime.registry,
            queue_name=settings.queue_name,
            blobs=runtime.blobs,
            tiny_models=settings.tiny_models,
            tiers=Tiers.load(settings.tiers_file),
            loras_dir=settings.loras_dir,
            train_queue_name=settings.train_queue_name,
        )
        try:
            await run(config, services, connection=connection)
        finally:
            if http is not None:
                await http.cleanup()
    return 0


async def _discord(settings: Settings, args: argparse.Namespace) -> int:
    import discord

    from atelier.observability import start_http
    from atelier.runtime import Runtime
    from bots.discord.client import AtelierBot, BotConfig, configure_endpoints
    from quotas.tiers import Tiers

    token = settings.secret("discord_token")
    if not token:
        raise UsageError(
            "set ATELIER_DISCORD_TOKEN (or ATELIER_DISCORD_TOKEN_FILE) to your bot's token; "
            "`atelier discord --help` shows where to find it"
        )
    configure_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    async with Runtime.open(settings) as runtime:
        config = BotConfig(
            redis=runtime.redis,
            registry=runtime.registry,
            blobs=runtime.blobs,
            queue_name=settings.queue_name,
            tiny_models=settings.tiny_models,
            guild_ids=tuple(settings.discord_guild_ids),
            admin_role=settings.discord_admin_role,
            loras_dir=settings.loras_dir,
            train_queue_name=settings.train_queue_name,
            tiers=Tiers.load(settings.tiers_file),
        )
        try:
            async with AtelierBot(config) as bot:
                http = None
                if settings.metrics_port:

                    async def healthy() -> bool:
                        return await runtime.services_answer() and bot.is_ready() and not bot.is_closed()

                    http = await start_http(settings.metrics_host, settings.metrics_port, healthy)
                try:
                    await bot.start(token)
                finally:
                    if http is not None:
                        await http.cleanup()
        except discord.LoginFailure:
            raise UsageError("Discord refused the token (401): copy it again from the Bot page") from None
    return 0


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import migrate

    applied = await migrate(settings.database_url)
    print("\n".join(applied) if applied else "no pending migrations", file=sys.stderr)
    return 0


_COMMANDS = {
    "imagine": _imagine,
    "demo": _demo,
    "worker": _worker,
    "migrate": _migrate,
    "slack": _slack,
    "discord": _discord,
}

if __name__ == "__main__":
    sys.exit(main())
