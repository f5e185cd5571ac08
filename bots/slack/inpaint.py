"""Inpainting from Slack: the "Inpaint…" message shortcut with its modal, and the spec builder `/inpaint` shares.

The shortcut opens a modal for the mode (insertion, removal, outpaint), the prompt, the mask and, for outpaint,
how far to extend. The mask is a file chosen in the modal (a `file_input`) or else the message's second image.
On submission, what can be checked without downloading anything (a missing mask or prompt, a mask that is not
an image, an extension that does not parse) is answered on the modal's fields (`response_action: errors`), so
the person fixes it where they typed it; nothing is enqueued. Then the modal closes, and the images are
downloaded, checked against the inpainting model (`jobs.specs.inpaint_spec`), stored, and the job is submitted
into the message's thread. A problem found only then (an unreadable file, a mask of another shape) is told to
the person alone (`chat.postEphemeral`) in that thread: Slack allows a submission 3 seconds, too short to wait
for downloads.

Outpaint without an extension widens the image by half: a quarter of its width on the left and on the right,
the commonest use (a wider shot); the modal says so.
"""

from __future__ import annotations

import logging
import secrets

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError
from bots.slack import answers, blocks, files, modals
from bots.slack.services import SlackServices
from bots.slack.submit import submit
from engine.canvas import Extend
from jobs.inputs import store_input
from jobs.specs import MAX_PROMPT_CHARS, MAX_SEED, Inpaint, inpaint_spec, parse_extend

log = logging.getLogger(__name__)

SHORTCUT = "inpaint"  # the message shortcut's callback id
MODAL = "inpaint_modal"  # the modal's callback id
MASK_TYPES = ["png", "jpg", "jpeg", "webp"]
MODE_LABELS = [
    ("insertion", "Insertion: paint the prompt into the mask"),
    ("removal", "Removal: fill the mask with the background"),
    ("outpaint", "Outpaint: extend the canvas"),
]
NEEDS_MASK = frozenset({"insertion", "removal"})


def default_extend(width: int) -> Extend:
    """What outpaint adds without an `extend`: a quarter of the width on each side (a multiple of 8, ≥ 8)."""
    side = max(8, width // 4 // 8 * 8)
    return Extend(left=side, right=side)


async def build_inpaint(
    services: SlackServices,
    client: AsyncWebClient,
    *,
    mode: str,
    image_file: dict,
    mask_file: dict | None,
    prompt: str = "",
    extend: Extend | None = None,
    options: dict | None = None,
) -> Inpaint:
    """Download and check the image (and mask), build the spec with the model's checks, and only then store the
    inputs; every problem is a CommandError with the reason."""
    image = await files.fetch_image(image_file, client)
    mask = None if mask_file is None else await files.fetch_image(mask_file, client)
    if mode == "outpaint" and extend is None:
        extend = default_extend(image.width)
    try:
        spec = inpaint_spec(
            services.registry,
            mode=mode,
            image=image,
            mask=mask,
            prompt=prompt,
            extend=extend,
            tiny=services.tiny_models,
            random_seed=secrets.randbelow(MAX_SEED + 1),
            **(options or {}),
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    keys = {"image": await store_input(services.blobs, image)}
    if mask is not None:
        keys["mask"] = await store_input(services.blobs, mask)
    return spec.model_copy(update=keys)


def inpaint_modal(images: list[dict], channel: str, thread_ts: str) -> dict:
    """The modal for the message's first image; its second image, if any, is the mask unless one is chosen."""
    second = images[1] if len(images) > 1 else None
    mask_hint = "White where the image changes, black where it stays. Not used by outpaint."
    if second is not None:
        mask_hint += f" Left empty: the message's second image, {second.get('name') or 'unnamed'}."
    inputs = [
        modals.note(f"Editing *{blocks.escape(files.display_name(images[0]))}*."),
        modals.select_input("mode", "Mode", MODE_LABELS, "insertion"),
        modals.text_input(
            "prompt",
            "Prompt",
            optional=True,
            max_length=MAX_PROMPT_CHARS,
            placeholder="a red umbrella",
            hint="What to paint: needed for insertion, optional for outpaint, unused by removal.",
        ),
        modals.file_input("mask", "Mask", MASK_TYPES, hint=mask_hint),
        modals.text_input(
            "extend",
            "Extend (outpaint)",
            optional=True,
            placeholder="left=64,right=64,top=0,bottom=0",
            hint="Pixels to add per side. Left empty: a quarter of the width on the left and on the right.",
        ),
    ]
    metadata = {"channel": channel, "thread_ts": thread_ts, "image": images[0]["id"]}
    if second is not None:
        metadata["mask"] = second["id"]
    return modals.modal(MODAL, "Inpaint", "Inpaint", inputs, metadata)


def field_errors(view: dict) -> dict[str, str]:
    """What is wrong with a submission that can be told without downloading anything, by input block."""
    mode = modals.selected(view, "mode") or "insertion"
    chosen = modals.chosen_files(view, "mask")
    has_mask = bool(chosen) or "mask" in modals.metadata(view)
    errors: dict[str, str] = {}
    if mode in NEEDS_MASK and not has_mask:
        errors["mask"] = f"{mode.capitalize()} needs a mask: an image, white where the picture should change."
    if mode == "insertion" and not modals.text_value(view, "prompt"):
        errors["prompt"] = "Insertion needs a prompt: what to paint into the mask."
    if mode == "outpaint" and chosen:
        errors["mask"] = "Outpaint makes its own mask from the extension: remove this file."
    elif chosen and not files.is_image(chosen[0]):
        errors["mask"] = f"{files.display_name(chosen[0])} is not an image: choose a PNG or JPEG."
    elif chosen:
        try:
            files.check_declared_size(chosen[0])
        except CommandError as exc:
            errors["mask"] = str(exc)
    extend = modals.text_value(view, "extend")
    if extend and mode != "outpaint":
        errors["extend"] = f"{mode.capitalize()} repaints inside the image: extending is for outpaint only."
    elif extend:
        try:
            parse_extend(extend)
        except ValueError as exc:
            errors["extend"] = str(exc)
    return errors


def register(app: AsyncApp, services: SlackServices) -> None:
    """Add the "Inpaint…" shortcut (callback id `inpaint`) and its modal's submission to `app`."""

    @app.shortcut({"type": "message_action", "callback_id": SHORTCUT})
    async def inpaint_shortcut(
        ack: AsyncAck, shortcut: dict, client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        message = shortcut.get("message") or {}
        try:
            images = files.image_files(message)
        except CommandError as exc:
            await answers.warn(respond, exc)
            return
        await modals.open_on_message(client, shortcut, inpaint_modal, images)

    @app.view(MODAL)
    async def inpaint_submitted(
        ack: AsyncAck, view: dict, body: dict, client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        errors = field_errors(view)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        meta = modals.metadata(view)
        mode = modals.selected(view, "mode") or "insertion"
        user = body["user"]["id"]
        try:
            image_file = await files.file_info(client, meta["image"])
            chosen = modals.chosen_files(view, "mask")
            mask_id = chosen[0]["id"] if chosen else meta.get("mask")
            mask_file = None
            if mode in NEEDS_MASK and mask_id:
                mask_file = await files.file_info(client, mask_id)
            extend_text = modals.text_value(view, "extend")
            spec = await build_inpaint(
                services,
                client,
                mode=mode,
                image_file=image_file,
                mask_file=mask_file,
                prompt=modals.text_value(view, "prompt") if mode != "removal" else "",
                extend=parse_extend(extend_text) if extend_text else None,
            )
            await submit(
                client,
                services,
                spec,
                request_id=f"slack:view:{view['id']}",
                channel=meta["channel"],
                thread_ts=meta["thread_ts"],
                workspace=context["workspace"],
            )
        except CommandError as exc:
            await answers.warn_in(
                client, channel=meta["channel"], user=user, thread_ts=meta["thread_ts"], problem=exc
            )
