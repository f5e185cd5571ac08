"""`atelier serve`: the whole of Atelier on one machine, in one command.

It runs every configured front-end (the Discord bot when ATELIER_DISCORD_TOKEN is set, the Slack app when
ATELIER_SLACK_BOT_TOKEN is) and the workers (one per GPU, or one on a machine without; `--workers N`), each
serving the image and training queues, all on one queue, one database and one blob store: the embedded ones of
ATELIER_DATA_DIR unless ATELIER_REDIS_URL, ATELIER_DATABASE_URL and ATELIER_BLOB_URL name others. Before
starting anything it runs `atelier doctor`'s checks and applies pending migrations, and it holds the embedded
Redis open for its whole run, so a child that restarts finds the queue where it left it.

The processes and how they stop are atelier.supervisor's: one log stream with a prefix per process, a crashed
process restarted with backoff, Ctrl-C or SIGTERM stopping the front-ends first, then the workers within
`--grace` seconds, exit status 0. Other `atelier` commands started beside it in the same folder (`atelier
imagine`, `atelier admin`, a second `atelier worker`) share its queue. Several machines: see the README's
"Deploy with Docker Compose".
"""

from __future__ import annotations

import argparse
import os
import sys

from atelier.cli import UsageError
from atelier.settings import Settings

SETUP = """\
atelier serve runs the chat bots and the workers together, and no chat platform is configured yet.
Set the tokens of one (or both) in the environment or in .env, then run atelier serve again.

Discord   ATELIER_DISCORD_TOKEN=…            the bot's token: Developer Portal, your application, Bot,
                                             Reset Token (`atelier discord --help` has every step)
          ATELIER_DISCORD_GUILD_IDS=…        optional: your server's id, so /imagine shows up at once

Slack     ATELIER_SLACK_BOT_TOKEN=xoxb-…     the Bot User OAuth Token (Install App)
          ATELIER_SLACK_APP_TOKEN=xapp-…     Socket Mode (no public URL): an app-level token, connections:write
     or   ATELIER_SLACK_SIGNING_SECRET=…     HTTP mode instead (Basic Information, Signing Secret)

A secret may come from a file instead: ATELIER_DISCORD_TOKEN_FILE=/run/secrets/discord_token, and so on.
`atelier doctor` shows what is set and whether each service answers."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the configured chat bots and the workers together on one queue (one box, one command)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--workers", type=int, metavar="N", help="worker processes (default: one per GPU, or one without)"
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long running jobs get to finish when stopping, before they are handed back (default: 30)",
    )


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from atelier.doctor import passed, render, run_checks
    from atelier.runtime import Runtime
    from atelier.supervisor import Supervisor

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers takes a number of processes, at least 1 (got {args.workers})")
    if settings.discord_token is None and settings.slack_bot_token is None:
        print(SETUP, file=sys.stderr)
        return 2
    checks = await run_checks(settings)
    print(render(checks), flush=True)
    if not passed(checks):
        print("atelier serve: fix the problems above, then start it again", file=sys.stderr)
        return 1
    # The embedded Redis (if any) stays joined and the database migrated while the children come and go.
    async with Runtime.open(settings):
        children = plan_children(settings, workers=args.workers or _gpu_count() or 1)
        return await Supervisor(children, grace_s=args.grace).run()


def plan_children(settings: Settings, *, workers: int) -> list:  # -> list[Child]
    """The processes `atelier serve` keeps running for these settings: front-ends first, then the workers."""
    from atelier.supervisor import Child

    env = dict(os.environ)
    children = []
    if settings.discord_token is not None:
        children.append(Child("discord", ["discord"], env, front_end=True))
    if settings.slack_bot_token is not None:
        children.append(Child("slack", ["slack"], env, front_end=True))
    gpus = _gpu_count() if settings.device == "auto" else 0
    for i in range(workers):
        worker_env = dict(env)
        if gpus > 1:
            worker_env["ATELIER_DEVICE"] = f"cuda:{i % gpus}"  # one GPU each, round robin beyond that
        children.append(Child(f"worker-{i + 1}", ["worker", "--queues", "images,train"], worker_env, False))
    if settings.metrics_port:  # one port each, counting up from the configured one
        for offset, child in enumerate(children):
            child.env = {**child.env, "ATELIER_METRICS_PORT": str(settings.metrics_port + offset)}
    return children


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


COMMANDS = {"serve": _serve}
