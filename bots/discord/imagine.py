"""`/imagine`: text-to-image from a prompt, with typed options or Midjourney-style flags in the prompt.

Everything that can be wrong with the request (an unknown flag or model, a prompt made only of flags, a limit
of the model, a direct message) is checked first, in memory and in microseconds, and answered with an
ephemeral message as the interaction's first response: nothing is deferred publicly, nothing is enqueued.
A valid request is deferred at once, before any database or queue work (see `launch`); LoRA names are the
server's own and need the database, so they are checked after the deferral, and an unknown one withdraws the
public "thinking…" message for an ephemeral answer (see `loras`). An attached image makes it image-to-image.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from bots.commands import (
    IMAGE_PROMPT_ONLY,
    CommandError,
    ParsedPrompt,
    merge_options,
    parse_lora,
    parse_prompt,
)
from bots.discord.choices import choices
from bots.discord.guided import start_guided, wants_guidance
from bots.discord.inputs import AttachmentRef, input_image, precheck
from bots.discord.launch import defer_then_start, refuse
from bots.discord.loras import lora_names, with_guild_loras
from bots.member_defaults import MemberDefaults, member_defaults
from engine.edit_requests import DEFAULT_VARIATION_STRENGTH
from engine.lora import check_loras
from jobs.prompt_params import image_weight_strength
from jobs.specs import MAX_SEED, Imagine, Vary, imagine_spec, vary_spec
from jobs.styles import BUILT_IN, find_style
from storage.models import get_or_create_tenant

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from bots.discord.client import AtelierBot

TEXT_TO_IMAGE_ONLY = ("tile", "chaos", "stylize", "hires")
ASPECTS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9")


def build_spec(
    bot: AtelierBot,
    prompt: str | ParsedPrompt,
    options: dict[str, object],
    defaults: MemberDefaults | None = None,
) -> tuple[Imagine, list[tuple[str, float]]]:
    """Flags from the prompt merged with the typed options, checked against the model's limits; the spec
    without LoRAs, and the LoRAs asked for (their names are the server's, checked after the deferral: see
    `loras`). `defaults`: the member's own and the server's styles (`bots.member_defaults`), read after the
    deferral; without them a style that is not built in is left for that second build.

    Raises ValueError (CommandError for the flags) with the message the user sees."""
    parsed = prompt if isinstance(prompt, ParsedPrompt) else parse_prompt(prompt)
    merged = merge_options(parsed, options)
    if defaults is not None:
        merged = defaults.apply(merged)
    style = merged.get("style")
    if defaults is None and style and str(style).strip().lower() not in BUILT_IN:
        style = None
    loras: list[tuple[str, float]] = merged.get("lora") or []  # type: ignore[assignment]
    check_loras(loras)  # how many, weights, repeats: the names come later
    if merged.get("iw") is not None:
        raise CommandError(IMAGE_PROMPT_ONLY)
    spec = imagine_spec(
        bot.config.registry,
        prompt=parsed.prompt,
        negative=str(merged.get("negative") or ""),
        model=merged.get("model"),  # type: ignore[arg-type]
        size=merged.get("size"),  # type: ignore[arg-type]
        aspect=merged.get("aspect"),  # type: ignore[arg-type]
        steps=merged.get("steps"),  # type: ignore[arg-type]
        guidance=merged.get("guidance"),  # type: ignore[arg-type]
        seed=merged.get("seed"),  # type: ignore[arg-type]
        count=merged.get("count"),  # type: ignore[arg-type]
        tiny=bot.config.tiny_models,
        random_seed=secrets.randbelow(MAX_SEED + 1),
        style=style,  # type: ignore[arg-type]
        styles=None if defaults is None else defaults.styles,
        tile=bool(merged.get("tile")),
        chaos=merged.get("chaos") or 0,  # type: ignore[arg-type]
        stylize=merged.get("stylize"),  # type: ignore[arg-type]
        hires=merged.get("hires"),  # type: ignore[arg-type]  # here only 1 (off): a scale is guided
    )
    return spec, loras


@app_commands.command(name="imagine", description="Generate images from a prompt")
@app_commands.guild_only()
@app_commands.describe(
    prompt="What to draw. Flags: --ar 16:9 --seed 7 --no text --style photo --tile --chaos 50 --s 200 --relax",
    negative="What the image should not contain",
    aspect="Aspect ratio W:H, e.g. 16:9",
    model="Model to use (default: the server's default)",
    seed="Seed of the first image (same seed, same picture)",
    steps="Denoising steps (more: slower, finer)",
    count="Number of images",
    lora="A LoRA of this server, as name or name:0.8 (more with --lora in the prompt)",
    image="A starting image: the result follows its layout and colours (image-to-image); with control, the "
    "image whose edges or depth the result follows",
    control="Follow the attached image through a ControlNet: canny (edges), depth, openpose (give control_image)",
    control_image="The condition image itself (an edge map, a depth map, an OpenPose skeleton)",
    sref="A style reference image (weight: --sw 0-2)",
    cref="A content or character reference image (weight: --cw 0-2)",
)
async def imagine_command(
    interaction: discord.Interaction[AtelierBot],
    prompt: str,
    negative: str | None = None,
    aspect: str | None = None,
    model: str | None = None,
    seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
    steps: app_commands.Range[int, 1, 150] | None = None,
    count: app_commands.Range[int, 1, 10] | None = None,
    lora: str | None = None,
    image: discord.Attachment | None = None,
    control: Literal["canny", "depth", "openpose"] | None = None,
    control_image: discord.Attachment | None = None,
    sref: discord.Attachment | None = None,
    cref: discord.Attachment | None = None,
) -> None:
    if interaction.guild_id is None:
        await refuse(interaction, "/imagine works in a server channel, not in direct messages.")
        return
    options = {
        "negative": negative,
        "aspect": aspect,
        "model": model,
        "seed": seed,
        "steps": steps,
        "count": count,
    }
    try:
        options["lora"] = [parse_lora(lora)] if lora else None
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return
    guidance = {"image": image, "control_image": control_image, "sref": sref, "cref": cref}
    refs = {name: None if a is None else AttachmentRef.of(a) for name, a in guidance.items()}
    try:
        parsed = parse_prompt(prompt)  # once before the deferral: every interaction of a burst pays it
        wanted = wants_guidance(merge_options(parsed, {**options, "control": control}), refs)
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return
    interaction.extras["lane"] = parsed.lane  # --relax / --fast (jobs.relax); None: /settings' lane
    if wanted:
        await start_guided(interaction, prompt, {**options, "control": control}, refs)
        return
    if image is not None:
        await _image_to_image(interaction, prompt, options, AttachmentRef.of(image))
        return
    try:
        checked, _ = build_spec(interaction.client, parsed, options)  # refused now, before the deferral
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return

    async def with_loras() -> Imagine:
        tenant = await get_or_create_tenant("discord", str(interaction.guild_id))
        defaults = await member_defaults("discord", tenant, str(interaction.user.id))
        spec, loras = build_spec(interaction.client, parsed, options, defaults)
        return await with_guild_loras(interaction, spec, loras) if loras else spec

    await defer_then_start(interaction, with_loras, title=checked.prompt)


async def _image_to_image(
    interaction: discord.Interaction[AtelierBot], prompt: str, options: dict[str, object], ref: AttachmentRef
) -> None:
    """Check the flags and what Discord says of the attachment, defer, then download it and start the job."""
    try:
        parsed = parse_prompt(prompt)
        merged = merge_options(parsed, options)
        if merged.get("lora"):
            raise CommandError("LoRAs apply to text-to-image: remove the image, or remove --lora")
        for name in TEXT_TO_IMAGE_ONLY:
            if merged.get(name):
                raise CommandError(f"--{name} applies to text-to-image: remove the image, or remove --{name}")
        if merged.get("iw") is not None:
            image_weight_strength(merged["iw"])  # type: ignore[arg-type]  # refused now, before the download
        precheck(ref)
    except ValueError as exc:
        await refuse(interaction, str(exc))
        return
    bot = interaction.client

    async def from_upload() -> Vary:
        picture, key = await input_image(bot.config.blobs, ref)
        return build_vary_spec(bot, parsed.prompt, merged, picture, key)

    await defer_then_start(interaction, from_upload, title=parsed.prompt)


def build_vary_spec(
    bot: AtelierBot, prompt: str, merged: dict[str, object], image: PILImage.Image, key: str
) -> Vary:
    """Image-to-image of a stored image with the prompt and the merged options (the image sets the size); `--iw`
    sets the strength, `--style` expands the prompt."""
    negative = str(merged.get("negative") or "")
    if merged.get("style"):
        prompt, negative = find_style(str(merged["style"])).apply(prompt, negative)
    weight = merged.get("iw")
    return vary_spec(
        bot.config.registry,
        image=image,
        prompt=prompt,
        negative=negative,
        strength=DEFAULT_VARIATION_STRENGTH if weight is None else image_weight_strength(weight),  # type: ignore[arg-type]
        model=merged.get("model"),  # type: ignore[arg-type]
        steps=merged.get("steps"),  # type: ignore[arg-type]
        guidance=merged.get("guidance"),  # type: ignore[arg-type]
        seed=merged.get("seed"),  # type: ignore[arg-type]
        count=merged.get("count"),  # type: ignore[arg-type]
        tiny=bot.config.tiny_models,
        random_seed=secrets.randbelow(MAX_SEED + 1),
        image_key=key,
    )


@imagine_command.autocomplete("model")
async def _model_choices(
    interaction: discord.Interaction[AtelierBot], current: str
) -> list[app_commands.Choice[str]]:
    names = interaction.client.config.registry.names("txt2img")
    return choices(names, current)


@imagine_command.autocomplete("lora")
async def _lora_choices(
    interaction: discord.Interaction[AtelierBot], current: str
) -> list[app_commands.Choice[str]]:
    return choices(await lora_names(interaction), current)


@imagine_command.autocomplete("aspect")
async def _aspect_choices(
    interaction: discord.Interaction[AtelierBot], current: str
) -> list[app_commands.Choice[str]]:
    return choices(ASPECTS, current)


def setup(bot: AtelierBot) -> None:
    bot.tree.add_command(imagine_command)
