"""`atelier worker`: a GPU worker serving the image queue, the training queue or both, with the platform
repliers whose tokens are configured (workers post progress and results themselves), the HTTP API's replier (its
webhooks) and a sender of due webhooks (`jobs.webhooks`), so deliveries go on while any worker is alive."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from atelier.cli import UsageError
from atelier.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser("worker", help="run a GPU worker that serves the queue until stopped")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument(
        "--queues",
        default="images",
        metavar="images,train",
        help="which queues to serve: images (generation), train (LoRA training), or both; training holds the "
        "GPU for its whole run, so a worker serving both makes image jobs wait meanwhile (default: images)",
    )
    worker.add_argument(
        "--models",
        metavar="sdxl,flux-schnell",
        help="run only jobs for these model presets (with ATELIER_TINY_MODELS=1, also their tiny counterparts); "
        "jobs needing no particular model are taken as usual. A job for a model no live worker serves stays "
        "queued until one does (default: any model)",
    )


async def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from atelier.observability import start_http
    from atelier.runtime import Runtime
    from bots.api.webhooks import ApiReplier
    from jobs.worker import create_worker

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if not queues or set(queues) - {"images", "train"}:
        raise UsageError(f"--queues takes images, train or images,train (got {args.queues!r})")
    async with Runtime.open(settings) as runtime, runtime.webhook_sweeper().running() as sweeper:
        models = _served_models(runtime.registry, args.models, tiny=settings.tiny_models)
        repliers = _platform_repliers(settings, runtime) | {"api": ApiReplier(recorded=sweeper.wake)}
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
                    models=models,
                    routing_wait_s=settings.routing_wait_s,
                    retention_days=settings.retention_days(),  # the hourly retention job (jobs.retention)
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
        routing_wait_s=0,  # a training run loads its own base model: residency says nothing about it
    )


def _served_models(registry, names: str | None, *, tiny: bool) -> frozenset[str] | None:
    """The presets `--models` names (registry: engine.registry.Registry), with their tiny counterparts when
    ATELIER_TINY_MODELS=1 (jobs then name those); None without the flag. An unknown name is a usage error."""
    if names is None:
        return None
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    known = set(registry.names())
    unknown = [name for name in wanted if name not in known]
    if not wanted or unknown:
        raise UsageError(
            f"--models takes model presets, e.g. sdxl,flux-schnell (unknown: {', '.join(unknown)})"
        )
    served = set(wanted)
    if tiny:
        served |= {registry.get(name).tiny for name in wanted if registry.get(name).tiny}
    return frozenset(served)


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


COMMANDS = {"worker": _worker}
