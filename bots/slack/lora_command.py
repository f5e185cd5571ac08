"""`/atelier lora train|list|delete`: the workspace's own LoRAs, for its admins (`admin_command` checks).

    /atelier lora train NAME TRIGGER <zip link> [--steps N]    the trigger may be several words
    /atelier lora list
    /atelier lora delete NAME

`train` takes a zip posted in Slack (3 to 200 images, optional `NAME.txt` captions), given by its permalink;
the training's status message starts a thread in the channel, where the worker reports steps and loss and
then posts the samples and how to use the LoRA. `--steps` overrides the model family's default (1500 for
SD 1.5): fewer is quicker and weaker. `list` and `delete` answer only the admin who typed them.
"""

from __future__ import annotations

import shlex

from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import blocks
from bots.slack.services import SlackServices
from bots.slack.submit import command_request_id
from bots.slack.training import start_training, unserved_note, zip_from_link
from bots.slack.workspace import Workspace
from jobs.training import delete_lora, list_loras
from storage.lora_models import LoraModel

USAGE = (
    "Usage: `/atelier lora train NAME TRIGGER <link to a zip of images> [--steps N]`, `/atelier lora list`, "
    "`/atelier lora delete NAME`"
)


def parse_train(words: list[str]) -> tuple[str, str, str, int | None]:
    """`NAME TRIGGER… LINK [--steps N]` → (name, trigger, link, steps)."""
    steps = None
    if "--steps" in words:
        at = words.index("--steps")
        if at + 1 >= len(words):
            raise CommandError(f"--steps needs a number. {USAGE}")
        try:
            steps = int(words[at + 1])
        except ValueError:
            raise CommandError(f"--steps needs a whole number (got {words[at + 1]!r})") from None
        words = words[:at] + words[at + 2 :]
    if len(words) < 3:
        raise CommandError(f"train needs a name, a trigger word and a link to the zip. {USAGE}")
    return words[0], " ".join(words[1:-1]), words[-1], steps


async def run(
    client: AsyncWebClient, services: SlackServices, command: dict, workspace: Workspace, text: str
) -> str:
    """Do what `text` (after `lora`) asks; return the ephemeral answer. CommandError for a mistake."""
    try:
        words = shlex.split(text.replace("\u2014", "--").replace("\u2013", "--"))
    except ValueError as exc:
        raise CommandError(f"{exc} (check the quotes). {USAGE}") from None
    action, rest = (words[0].lower(), words[1:]) if words else ("", [])
    if action == "list" and not rest:
        return await _listing(workspace)
    if action == "delete" and len(rest) == 1:
        return await _delete(services, workspace, rest[0])
    if action == "train":
        name, trigger, link, steps = parse_train(rest)
        dataset = await zip_from_link(client, link)
        job_id = await start_training(
            client,
            services,
            workspace=workspace,
            name=name,
            trigger=trigger,
            dataset_zip=dataset,
            steps=steps,
            request_id=command_request_id(command),
            channel=command["channel_id"],
            thread_ts=None,
        )
        if job_id is None:
            return f"LoRA `{name}` is already training from this command: follow it in its thread."
        started = f"Training LoRA `{name}` ({job_id}): follow it in its thread in this channel."
        note = await unserved_note(services.redis, services.train_queue_name)
        return f"{started}\n:hourglass: {note}" if note else started
    raise CommandError(USAGE)


async def _listing(workspace: Workspace) -> str:
    rows = await list_loras(await workspace.tenant())
    if not rows:
        return f"This workspace has no LoRAs yet. {USAGE}"
    lines = [
        f"• `{row.name}`: {row.status.value} · {row.base_model} · trigger: {blocks.escape(row.trigger)} · "
        f"{row.steps} steps"
        for row in rows
    ]
    return "This workspace's LoRAs (use one with `--lora NAME:0.8`):\n" + "\n".join(lines)


async def _delete(services: SlackServices, workspace: Workspace, name: str) -> str:
    tenant = await workspace.tenant()
    lora = await LoraModel.get_or_none(tenant=tenant, name=name)
    if lora is None:
        names = [row.name for row in await list_loras(tenant)]
        known = f"; its LoRAs: {', '.join(names)}" if names else ": it has none"
        raise CommandError(f"This workspace has no LoRA named {name!r}{known}.")
    await delete_lora(services.blobs, lora)
    return f"Deleted LoRA `{name}` and its files."
