"""`/inpaint image mode [mask] [prompt] [extend]`: repaint part of an attached image.

Modes as in `atelier inpaint`: insertion paints the prompt into the mask's white area, removal fills it with
the surrounding background, outpaint grows the canvas by `extend` (`left=256,bottom=128`) and paints the new
area. The prompt takes the usual flags that make sense here (`--seed`, `--steps`, `--n`, `--model`, `--no`,
`--guidance`); a removal or outpaint needs no words, so a prompt of only flags is fine for them.

What can be told without downloading anything (a flag that does not apply, a missing mask, a mask for an
outpaint, a malformed extend, an attachment Discord says is not an image or is too large) is refused at once,
ephemerally. Then the request is deferred, both files are downloaded and decoded, and the engine's own checks
run (`jobs.specs.inpaint_spec`: the mask's shape, the model's size limits); a refusal there withdraws the public
"thinking…" message. Nothing is enqueued or charged for a refused request.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bots.commands import CommandError, ParsedPrompt, merge_options, parse_prompt
from bots.discord.choices import choices
from bots.discord.inputs import AttachmentRef, input_image, precheck
from bots.discord.launch import defer_then_start, refuse
from engine.canvas import Extend
from engine.edit_requests import MODES
from jobs.specs import MAX_SEED, Inpaint, inpaint_spec, parse_extend

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

NOT_HERE = ("aspect", "size", "lora")  # flags of /imagine that an edit of a given image cannot take
MODE_CHOICES = [
    app_commands.Choice(name="insertion: paint the prompt into the mask", value="insertion"),
    app_commands.Choice(name="removal: fill the mask with the background", value="removal"),
    app_commands.Choice(name="outpaint: extend the canvas", value="outpaint"),
]
TITLES = {"insertion": "Insertion", "removal": "Removal", "outpaint": "Outpaint"}


def check_request(
    mode: str, prompt: str, typed: dict[str, object], has_mask: bool, extend: str | None
) -> tuple[str, dict[str, object], Extend]:
    """The prompt's words, its flags merged with the `typed` options, and the extension; ValueError for what is
    wrong before any download."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    parsed = parse_prompt(prompt, allow_empty=True) if prompt.strip() else ParsedPrompt("")
    options = merge_options(parsed, typed)
    for name in NOT_HERE:
        if name in options:
            raise CommandError(f"--{name} does not apply to /inpaint: the image sets the size")
    if mode == "outpaint":
        if has_mask:
            raise ValueError("outpaint makes its own mask from the extension: leave the mask out")
        if not extend:
            raise ValueError("outpaint needs extend: pixels to add per side, e.g. left=256,bottom=128")
        return parsed.prompt, options, parse_extend(extend)
    if not has_mask:
        raise ValueError(
            f"{mode} needs a mask: attach an image that is white where the picture should change"
        )
    if extend:
        raise ValueError(f"{mode} repaints inside the image: extend is for outpaint only")
    if mode == "insertion" and not parsed.prompt:
        raise ValueError("insertion needs a prompt describing what to paint into the mask")
    return parsed.prompt, options, Extend()


@app_commands.command(name="inpaint", description="Repaint part of an image: insert, remove, or extend it")
@app_commands.guild_only()
@app_commands.describe(
    image="The image to edit (PNG, JPEG or WebP)",
    mode="insertion, removal or outpaint",
    mask="Same shape as the image: white where it changes, black where it stays (insertion, removal)",
    prompt="What to paint (needed for insertion). Flags work too: --seed 7 --steps 30 --no text",
    extend="Outpaint: pixels to add per side, e.g. left=256,right=0,top=0,bottom=128",
    model="Inpainting model (default: the server's default)",
)
@app_commands.choices(mode=MODE_CHOICES)
async def inpaint_command(
    interaction: discord.Interaction[AtelierBot],
    image: discord.Attachment,
    mode: str,
    mask: discord.Attachment | None = None,
    prompt: str | None = None,
    extend: str | None = None,
    model: str | None = None,
) -> None:
    if interaction.guild_id is None:
        await refuse(interaction, "/inpaint works in a server channel, not in direct messages.")
        return
    image_ref = AttachmentRef.of(image)
    mask_ref = None if mask is None else AttachmentRef.of(mask)
    try:
        words, options, extension = check_request(
            mode, prompt or "", {"model": model}, mask_ref is not None, extend
        )
        for ref in (image_ref, mask_ref):
            if ref is not None:
                precheck(ref)
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return
    bot = interaction.client

    async def from_uploads() -> Inpaint:
        picture, image_key = await input_image(bot.config.blobs, image_ref)
        mask_image, mask_key = (
            (None, None) if mask_ref is None else await input_image(bot.config.blobs, mask_ref)
        )
        return build_spec(bot, mode, words, options, extension, picture, image_key, mask_image, mask_key)

    title = words or f"{TITLES[mode]} of {image_ref.filename}"
    await defer_then_start(interaction, from_uploads, title=title)


def build_spec(
    bot: AtelierBot,
    mode: str,
    prompt: str,
    options: dict[str, object],
    extend: Extend,
    image,  # PIL images, decoded by `input_image`
    image_key: str,
    mask,
    mask_key: str | None,
) -> Inpaint:
    """The checked `Inpaint` spec of stored inputs; ValueError naming what the model cannot do."""
    return inpaint_spec(
        bot.config.registry,
        mode=mode,
        image=image,
        mask=mask,
        prompt=prompt,
        negative=str(options.get("negative") or ""),
        extend=extend,
        model=options.get("model"),  # type: ignore[arg-type]
        steps=options.get("steps"),  # type: ignore[arg-type]
        guidance=options.get("guidance"),  # type: ignore[arg-type]
        seed=options.get("seed"),  # type: ignore[arg-type]
        count=options.get("count"),  # type: ignore[arg-type]
        tiny=bot.config.tiny_models,
        random_seed=secrets.randbelow(MAX_SEED + 1),
        image_key=image_key,
        mask_key=mask_key,
    )


@inpaint_command.autocomplete("model")
async def _model_choices(
    interaction: discord.Interaction[AtelierBot], current: str
) -> list[app_commands.Choice[str]]:
    return choices(interaction.client.config.registry.names("inpaint"), current)


def setup(bot: AtelierBot) -> None:
    bot.tree.add_command(inpaint_command)
