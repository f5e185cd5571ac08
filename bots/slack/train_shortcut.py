"""The "Train LoRA…" message shortcut: train a LoRA on the images of one message (3 to 10: Slack puts at most
10 files in a message; a larger dataset goes as a zip with `/atelier lora train`).

Admins only, as every `/atelier` action: anyone else, or a message with too few images, gets an ephemeral answer
and no modal. Admin rights are checked again when the modal is submitted (a form stays open as long as its user
likes, and rights can be taken away meanwhile): a submitter who is no longer an admin gets the same ephemeral
refusal in the message's thread, and nothing is downloaded or started. The modal asks for the name, the trigger word and optionally the steps. A name or steps that do
not parse come back on the modal's fields; then the modal closes, the images are downloaded (bounded), zipped
(`jobs.datasets.zip_folder`) and the training is started in the message's thread (`training`). A refusal found
only then (an image that does not decode, a name already taken) is told to the admin alone in that thread.
"""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import answers, files, modals
from bots.slack.admin_command import refusal
from bots.slack.admins import is_admin
from bots.slack.config import SlackConfig
from bots.slack.services import SlackServices
from bots.slack.training import start_training, unserved_note, zip_of_images
from engine.lora import LORA_NAME
from engine.training_config import MIN_IMAGES
from jobs.training import MAX_TRIGGER_CHARS

log = logging.getLogger(__name__)

SHORTCUT = "train_lora"
MODAL = "train_lora_modal"
MAX_STEPS = 100_000


def train_modal(images: list[dict], channel: str, thread_ts: str) -> dict:
    inputs = [
        modals.note(f"Training on the {len(images)} images of this message."),
        modals.text_input(
            "name",
            "Name",
            max_length=64,
            placeholder="ink-style",
            hint="How prompts call it: --lora NAME:0.8. Letters, digits, - and _.",
        ),
        modals.text_input(
            "trigger",
            "Trigger word",
            max_length=MAX_TRIGGER_CHARS,
            placeholder="zq ink",
            hint="A rare word that calls the style up in a prompt; each image's caption.",
        ),
        modals.text_input(
            "steps",
            "Steps",
            optional=True,
            placeholder="1500",
            hint="Training steps; left empty, the model's default (1500 for SD 1.5). Fewer is quicker, weaker.",
        ),
    ]
    metadata = {"channel": channel, "thread_ts": thread_ts, "images": [f["id"] for f in images]}
    return modals.modal(MODAL, "Train a LoRA", "Train", inputs, metadata)


def field_errors(view: dict) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not LORA_NAME.fullmatch(modals.text_value(view, "name")):
        errors["name"] = "Use 1 to 64 letters, digits, - or _, starting with a letter or digit."
    if not modals.text_value(view, "trigger"):
        errors["trigger"] = "Give the word that will call the LoRA up in prompts."
    steps = modals.text_value(view, "steps")
    if steps and not (steps.isdigit() and 1 <= int(steps) <= MAX_STEPS):
        errors["steps"] = f"A whole number of steps from 1 to {MAX_STEPS}, or empty for the default."
    return errors


def register(app: AsyncApp, config: SlackConfig, services: SlackServices) -> None:
    """Add the "Train LoRA…" shortcut (callback id `train_lora`) and its modal's submission to `app`."""

    @app.shortcut({"type": "message_action", "callback_id": SHORTCUT})
    async def train_shortcut(
        ack: AsyncAck, shortcut: dict, client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        message = shortcut.get("message") or {}
        try:
            if not await is_admin(client, config.admins, shortcut["user"]["id"]):
                raise CommandError(refusal("train LoRAs"))
            images = files.image_files(message)
            if len(images) < MIN_IMAGES:
                raise CommandError(
                    f"A LoRA needs at least {MIN_IMAGES} images; this message has {len(images)}. Post 3 to 10 "
                    "images in one message, or a zip of up to 200 with `/atelier lora train`."
                )
        except CommandError as exc:
            await answers.warn(respond, exc)
            return
        await modals.open_on_message(client, shortcut, train_modal, images)

    @app.view(MODAL)
    async def train_submitted(
        ack: AsyncAck, view: dict, body: dict, client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        errors = field_errors(view)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        meta = modals.metadata(view)
        if not await is_admin(client, config.admins, body["user"]["id"]):
            log.warning("train_lora modal submitted by %s, no longer an admin: refused", body["user"]["id"])
            await answers.warn_in(
                client,
                channel=meta["channel"],
                user=body["user"]["id"],
                thread_ts=meta["thread_ts"],
                problem=refusal("train LoRAs"),
            )
            return
        name = modals.text_value(view, "name")
        steps = modals.text_value(view, "steps")
        try:
            images = [await files.file_info(client, file_id) for file_id in meta["images"]]
            await start_training(
                client,
                services,
                workspace=context["workspace"],
                name=name,
                trigger=modals.text_value(view, "trigger"),
                dataset_zip=await zip_of_images(images, client),
                steps=int(steps) if steps else None,
                request_id=f"slack:view:{view['id']}",
                channel=meta["channel"],
                thread_ts=meta["thread_ts"],
            )
            problem = await unserved_note(
                services.redis, services.train_queue_name
            )  # started, but nothing will run it yet: say so
        except CommandError as exc:
            problem = str(exc)
        if problem:
            await answers.warn_in(
                client,
                channel=meta["channel"],
                user=body["user"]["id"],
                thread_ts=meta["thread_ts"],
                problem=problem,
            )
