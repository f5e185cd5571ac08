"""`/inpaint <image link> <mode> [--mask <link>] [--extend left=64] [prompt] [--seed 7 --steps 20 --no blur]`.

The typed form of the "Inpaint…" shortcut, for an image already posted in Slack: the links are file permalinks
(the file's menu: *Copy link*), resolved through `files.info` like `/upscale`'s. The prompt takes the flags of
`/imagine` that apply to an edit (seed, steps, count, guidance, model, `--no`); the result starts a thread of its
own in the channel. Anything wrong gets an ephemeral answer saying what, and nothing is enqueued.
"""

from __future__ import annotations

import shlex

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError, parse_prompt
from bots.slack import answers, files
from bots.slack.inpaint import NEEDS_MASK, build_inpaint
from bots.slack.services import SlackServices
from bots.slack.submit import submit_command
from engine.edit_requests import MODES
from jobs.specs import parse_extend
from jobs.text import shown

USAGE = (
    "Usage: `/inpaint <image link> insertion|removal|outpaint [--mask <mask link>] [--extend left=64] [prompt]` "
    "(links: the file's menu, *Copy link*)"
)
OWN_FLAGS = ("--mask", "--extend")
EDIT_OPTIONS = frozenset({"seed", "steps", "count", "guidance", "model", "negative"})


def parse_inpaint(text: str) -> tuple[str, str, dict[str, str], str, dict]:
    """Split the command into (image link, mode, {--mask, --extend}, prompt, options); CommandError saying what
    is wrong."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise CommandError(f"could not read the command: {exc}. {USAGE}") from None
    if len(words) < 2:
        raise CommandError(USAGE)
    link, mode, rest = words[0], words[1].lower(), words[2:]
    if mode not in MODES:
        raise CommandError(f"the mode must be one of {', '.join(MODES)} (got {shown(words[1])}). {USAGE}")
    own: dict[str, str] = {}
    remaining: list[str] = []
    i = 0
    while i < len(rest):
        flag = rest[i].lower()
        if flag in OWN_FLAGS:
            if i + 1 >= len(rest) or rest[i + 1].startswith("--"):
                raise CommandError(f"{rest[i]} needs a value. {USAGE}")
            own[flag] = rest[i + 1]
            i += 2
        else:
            remaining.append(rest[i])
            i += 1
    parsed = parse_prompt(shlex.join(remaining), allow_empty=True)
    unsupported = sorted(set(parsed.options) - EDIT_OPTIONS)
    if unsupported:
        raise CommandError(
            f"/inpaint does not take {', '.join(unsupported)}: the image sets the size. {USAGE}"
        )
    return link, mode, own, parsed.prompt, parsed.options


def register(app: AsyncApp, services: SlackServices) -> None:
    """Add the `/inpaint` command to `app`."""

    @app.command("/inpaint")
    async def inpaint_command(
        ack: AsyncAck, command: dict, client: AsyncWebClient, respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        try:
            link, mode, own, prompt, options = parse_inpaint(command.get("text", ""))
            if mode in NEEDS_MASK and "--mask" not in own:
                raise CommandError(
                    f"{mode} needs --mask <link to the mask image>: white where the image changes."
                )
            if mode == "outpaint" and "--mask" in own:
                raise CommandError("outpaint makes its own mask from --extend: leave --mask out.")
            extend = None
            if "--extend" in own:
                try:
                    extend = parse_extend(own["--extend"])
                except ValueError as exc:
                    raise CommandError(str(exc)) from None
            image_file = await files.linked_file(client, link)
            mask_file = await files.linked_file(client, own["--mask"]) if "--mask" in own else None
            spec = await build_inpaint(
                services,
                client,
                mode=mode,
                image_file=image_file,
                mask_file=mask_file,
                prompt=prompt,
                extend=extend,
                options=options,
            )
            await submit_command(client, services, spec, command, context["workspace"])
        except CommandError as exc:
            await answers.warn(respond, exc)
