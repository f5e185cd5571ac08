"""`/upscale <file permalink>`: upscale ×4 an image already posted in Slack (slash commands carry no files).

The permalink names the file (`…/files/<user>/<file id>/<name>`); `files.info` gives its download URL, and the
image is then downloaded, checked and stored like a shortcut's (`files`). The result starts a thread of its own
in the channel the command was typed in. A link that is not a Slack file, a file that is not an image, or one
over the limit gets an ephemeral answer; nothing is enqueued.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import answers, derive, files
from bots.slack.services import SlackServices
from bots.slack.submit import submit_command

USAGE = "Usage: `/upscale <link to an image in Slack>` (in the image's menu: *Copy link*)"


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
            file = await files.linked_file(client, command["text"])
            image, key = await files.input_image(services, file, client)
            spec = derive.derived_spec(services, "upscale", image, key)
            await submit_command(client, services, spec, command, context["workspace"])
        except CommandError as exc:
            await answers.warn(respond, exc)
