"""`/upscale <file permalink>`: upscale ×4 an image already posted in Slack (slash commands carry no files).

The permalink names the file (`…/files/<user>/<file id>/<name>`); `files.info` gives its download URL, and the
image is then downloaded, checked and stored like a shortcut's (`files`). The result starts a thread of its own
in the channel the command was typed in. A link that is not a Slack file, a file that is not an image, or one
over the limit gets an ephemeral answer; nothing is enqueued.
"""

from __future__ import annotations

import re
import uuid

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import derive, files
from bots.slack.services import SlackServices
from bots.slack.submit import submit

USAGE = "Usage: `/upscale <link to an image in Slack>` (in the image's menu: *Copy link*)"
FILE_ID = re.compile(r"/files(?:-pri)?/[^/]+/(F[A-Z0-9]+)")


def file_id(text: str) -> str:
    """The file id in a Slack file permalink (angle brackets, as Slack escapes links, are allowed)."""
    link = text.strip().strip("<>").split("|", 1)[0]
    match = FILE_ID.search(link)
    if match is None:
        raise CommandError(f"That is not a link to a file in Slack. {USAGE}")
    return match[1]


def register(app: AsyncApp, services: SlackServices) -> None:
    """Add the `/upscale` command to `app`."""

    @app.command("/upscale")
    async def upscale_command(
        ack: AsyncAck, command: dict, client: AsyncWebClient, respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        try:
            if not command.get("text", "").strip():
                raise CommandError(USAGE)
            try:
                info = await client.files_info(file=file_id(command["text"]))
            except SlackApiError as exc:
                error = exc.response.get("error", "")
                raise CommandError(
                    f"I can't open that file ({error}): it must be shared in a channel I'm in."
                ) from None
            image, key = await files.input_image(services, info["file"], client.token or "")
            spec = derive.derived_spec(services, "upscale", image, key)
            await submit(
                client,
                services,
                spec,
                request_id=f"slack:command:{command.get('trigger_id') or uuid.uuid4()}",
                channel=command["channel_id"],
                thread_ts=None,
                workspace=context["workspace"],
            )
        except CommandError as exc:
            await respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
