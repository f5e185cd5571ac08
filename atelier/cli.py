"""The `atelier` command line: generate from a terminal, run workers, migrate the database.

`imagine` and `demo` go through the same path as a chat command: validate, record, enqueue on arq, and wait for a
worker, starting one in this process when none serves the queue. Progress goes to stderr; the last lines on
stdout are the paths of the images, one per line. Bad input exits with status 2 and a one-line message before
anything is enqueued; a request that a quota, a pause or a ban refuses exits with status 3 and a one-line reason
(the limit, the usage, when it resets); a job that fails exits with status 1. Requests count against
`--tenant PLATFORM:ID --user ID` (default `cli:local`, user `local`); `atelier admin …` manages quotas.

This module is the parser and the dispatch only. Each group of commands lives in its own module (GROUP_MODULES:
`cli_imagine`, `cli_edit`, `cli_worker`, `cli_bots`, `cli_serve`, …); how a terminal command follows its job and
serves it when no worker does is `atelier.jobrun`; the shared clients are built by `atelier.runtime`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from atelier.settings import Settings
from quotas.errors import QuotaRefused

CLI_TENANT, CLI_USER = "cli:local", "local"  # the machine's owner, on the cli platform's starting tier


class UsageError(Exception):
    """Bad input from the person at the terminal: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atelier", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for group in _groups():
        group.add_parsers(sub)
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    return parser


# Subcommand groups kept in their own modules (one per feature area). Each module has
# `add_parsers(sub)` and `COMMANDS: dict[str, async (settings, args) -> int]`.
GROUP_MODULES: tuple[str, ...] = (
    "atelier.cli_imagine",
    "atelier.cli_edit",
    "atelier.cli_guided",
    "atelier.cli_admin",
    "atelier.cli_enhance",
    "atelier.cli_lora",
    "atelier.cli_serve",
    "atelier.cli_doctor",
    "atelier.cli_worker",
    "atelier.cli_bots",
    "atelier.cli_api",
    "atelier.cli_provenance",
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


def generation_kwargs(
    args: argparse.Namespace, settings: Settings, *, sized: bool = True
) -> dict[str, object]:
    """What `_add_generation_options` read, as the `jobs.specs` builders take it (without `size` and `aspect`
    where the input image sets the size), with a fresh random seed for a request that names none."""
    import secrets

    chosen = ("negative", "model", "steps", "guidance", "seed", "count") + (
        ("size", "aspect") if sized else ()
    )
    return {name: getattr(args, name) for name in chosen} | {
        "tiny": settings.tiny_models,
        "random_seed": secrets.randbelow(2**32),
    }


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


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import migrate

    applied = await migrate(settings.database_url)
    print("\n".join(applied) if applied else "no pending migrations", file=sys.stderr)
    return 0


_COMMANDS = {"migrate": _migrate}

if __name__ == "__main__":
    sys.exit(main())
