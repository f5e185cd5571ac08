"""Guided generation in Slack: `/imagine` with `--control canny|depth|openpose --image <link>` (or
`--control-image <link>`), `--sref <link>`, `--cref <link>`, `--hires 1.5` and the weights `--control-weight`,
`--sw`, `--cw`; `/blend <link> <link> [… up to 5] [prompt]`; `/describe <link>`, whose four prompts are posted
with a button each that runs /imagine with that prompt. Links are Slack file permalinks (the file's menu, *Copy
link*), resolved through `files.info` as `/upscale` and `/inpaint` do. The meaning lives in `jobs.guided` and
`jobs.describe`, shared with the CLI and Discord. Anything wrong gets one ephemeral answer; nothing is queued.
"""

from __future__ import annotations

import re
import secrets
import shlex

from PIL import Image
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import CommandError, merge_options, parse_prompt, prompt_words
from bots.slack import answers, files
from bots.slack.services import SlackServices
from bots.slack.submit import submit, submit_command
from engine.guided_requests import (
    DEFAULT_REFERENCE_WEIGHT,
    MAX_BLEND_IMAGES,
    MIN_BLEND_IMAGES,
    pixel_sha256,
    scales_hires,
)
from jobs.describe import describe_spec
from jobs.guided import Guided, GuidedReference, guided_spec
from jobs.inputs import store_input
from jobs.specs import MAX_SEED, imagine_spec
from storage.models import Job

LINK_FLAGS = ("--image", "--control-image", "--sref", "--cref")
GUIDANCE_FLAGS = ("--control", "--control-weight", "--hires", "--sw", "--cw", *LINK_FLAGS)
DESCRIBE_ACTION = re.compile(r"^describe:(j[0-9a-f]+):([0-9])$")
LINK = re.compile(r"<[^>]+>|https://\S+")
_PLACEHOLDER = Image.new("RGB", (64, 64))  # stands in for an image not downloaded yet, while checking


def wants_guidance(text: str) -> bool:
    """Whether the text asks for guided generation; `--hires 1` (the hires fix off) alone leaves it plain."""
    try:
        words = [word.lower() for word in prompt_words(text)]
    except ValueError:  # unreadable (an open quote): parse_prompt says so on the plain path
        return False
    return any(
        word in GUIDANCE_FLAGS and (word != "--hires" or _scales_hires(words[i + 1 : i + 2]))
        for i, word in enumerate(words)
    )


def _scales_hires(value: list[str]) -> bool:
    try:
        return scales_hires(float(value[0])) if value else True
    except ValueError:  # not a number: the guided path says so, as for any guidance flag
        return True


def split_links(text: str) -> tuple[str, dict[str, list[str]]]:
    """The text without the link flags, and the links each one gave. Words are read as `parse_prompt` reads them
    and written back quoted, so what remains parses to the same words (a quoted phrase, a `\u2028`)."""
    links: dict[str, list[str]] = {flag: [] for flag in LINK_FLAGS}
    words = prompt_words(text)
    kept: list[str] = []
    i = 0
    while i < len(words):
        flag = words[i].lower()
        if flag in LINK_FLAGS:
            if i + 1 >= len(words) or not LINK.fullmatch(words[i + 1]):
                raise CommandError(f"{flag} needs a link to an image posted in Slack (its menu: Copy link)")
            links[flag].append(words[i + 1])
            i += 2
            continue
        kept.append(words[i])
        i += 1
    return shlex.join(kept), links


async def _image(services: SlackServices, client: AsyncWebClient, link: str):
    file = await files.linked_file(client, link)
    if not files.is_image(file):
        raise CommandError(f"{files.display_name(file)} is not an image: link a PNG, JPEG or WebP")
    files.check_declared_size(file)
    image = await files.fetch_image(file, client)
    return image, await store_input(services.blobs, image)


async def guided_request(services: SlackServices, client: AsyncWebClient, text: str) -> Guided:
    """`/imagine` text with guidance flags → a checked, stored `Guided` spec; CommandError saying what is wrong."""
    rest, links = split_links(text)
    parsed = parse_prompt(rest)
    merged = merge_options(parsed, {})
    if merged.get("lora"):
        raise CommandError("LoRAs do not combine with control or references here: remove --lora")
    if links["--image"] and links["--control-image"]:
        raise CommandError("give --image (to follow) or --control-image (the condition itself), not both")
    if any(len(found) > 1 for flag, found in links.items() if flag in ("--image", "--control-image")):
        raise CommandError("one image to follow at most")
    source = (links["--control-image"] or links["--image"] or [None])[0]
    if merged.get("control") and source is None:
        raise CommandError(f"--control {merged['control']} needs --image <link>")
    roles = [
        (link, role, float(merged.get(weight_name) or DEFAULT_REFERENCE_WEIGHT))  # type: ignore[arg-type]
        for flag, role, weight_name in (
            ("--sref", "style", "sref_weight"),
            ("--cref", "content", "cref_weight"),
        )
        for link in links[flag]
    ]

    def build(control_image, references: list) -> Guided:
        return guided_spec(
            services.registry,
            prompt=parsed.prompt,
            negative=str(merged.get("negative") or ""),
            model=merged.get("model"),  # type: ignore[arg-type]
            size=merged.get("size"),  # type: ignore[arg-type]
            aspect=merged.get("aspect"),  # type: ignore[arg-type]
            steps=merged.get("steps"),  # type: ignore[arg-type]
            guidance=merged.get("guidance"),  # type: ignore[arg-type]
            seed=merged.get("seed"),  # type: ignore[arg-type]
            count=merged.get("count"),  # type: ignore[arg-type]
            tiny=services.tiny_models,
            random_seed=secrets.randbelow(MAX_SEED + 1),
            control=merged.get("control"),  # type: ignore[arg-type]
            control_image=control_image,
            control_given=bool(links["--control-image"]),
            control_weight=float(merged.get("control_weight") or 1.0),  # type: ignore[arg-type]
            references=references,
            hires=merged.get("hires"),  # type: ignore[arg-type]
        )

    try:
        # Everything but the images first, on stand-ins: a bad weight or control costs no download.
        build(None if source is None else _PLACEHOLDER, [(_PLACEHOLDER, role, w) for _, role, w in roles])
        control = None if source is None else await _image(services, client, source)
        stored = [(await _image(services, client, link), role, weight) for link, role, weight in roles]
        spec = build(None if control is None else control[0], [(i, r, w) for (i, _), r, w in stored])
    except CommandError:
        raise
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return _with_keys(spec, None if control is None else control[1], stored)


def _with_keys(spec: Guided, control_key: str | None, stored: list) -> Guided:
    references = [
        GuidedReference(image=key, role=role, weight=weight, sha256=pixel_sha256(image))
        for (image, key), role, weight in stored
    ]
    return spec.model_copy(update={"control_image": control_key, "references": references})


async def blend_request(services: SlackServices, client: AsyncWebClient, text: str) -> Guided:
    words = text.split()
    links = [word for word in words if LINK.fullmatch(word)]
    if not MIN_BLEND_IMAGES <= len(links) <= MAX_BLEND_IMAGES:
        raise CommandError(
            f"a blend takes {MIN_BLEND_IMAGES} to {MAX_BLEND_IMAGES} image links (got {len(links)}). "
            "Usage: `/blend <link> <link> [<link>…] [prompt]`"
        )
    parsed = parse_prompt(" ".join(word for word in words if word not in links), allow_empty=True)
    merged = merge_options(parsed, {})
    stored = [(await _image(services, client, link), "blend", DEFAULT_REFERENCE_WEIGHT) for link in links]
    try:
        spec = guided_spec(
            services.registry,
            prompt=parsed.prompt,
            model=merged.get("model"),  # type: ignore[arg-type]
            steps=merged.get("steps"),  # type: ignore[arg-type]
            seed=merged.get("seed"),  # type: ignore[arg-type]
            count=merged.get("count"),  # type: ignore[arg-type]
            tiny=services.tiny_models,
            random_seed=secrets.randbelow(MAX_SEED + 1),
            references=[(image, role, weight) for (image, _), role, weight in stored],
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return _with_keys(spec, None, stored)


def register(app: AsyncApp, services: SlackServices) -> None:
    """Add `/blend`, `/describe` and the describe buttons to `app` (/imagine's guidance: `bots.slack.imagine`)."""

    @app.command("/blend")
    async def blend_command(
        ack: AsyncAck, command: dict, client: AsyncWebClient, respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        try:
            spec = await blend_request(services, client, command.get("text", ""))
            await submit_command(client, services, spec, command, context["workspace"])
        except CommandError as exc:
            await answers.warn(respond, exc)

    @app.command("/describe")
    async def describe_command(
        ack: AsyncAck, command: dict, client: AsyncWebClient, respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        try:
            links = [word for word in command.get("text", "").split() if LINK.fullmatch(word)]
            if len(links) != 1:
                raise CommandError("Usage: `/describe <link to an image posted in Slack>`")
            image, key = await _image(services, client, links[0])
            spec = describe_spec(services.registry, image=image, tiny=services.tiny_models, image_key=key)
            await submit_command(client, services, spec, command, context["workspace"])
        except CommandError as exc:
            await answers.warn(respond, exc)

    @app.action(DESCRIBE_ACTION)
    async def imagine_described(
        ack: AsyncAck,
        body: dict,
        action: dict,
        client: AsyncWebClient,
        respond: AsyncRespond,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        match = DESCRIBE_ACTION.match(action["action_id"])
        assert match is not None  # the listener's own pattern
        workspace = context["workspace"]
        try:
            job = await Job.get_or_none(id=match[1], tenant=await workspace.tenant())
            prompts = [] if job is None else job.spec.get("prompts", [])
            if not int(match[2]) < len(prompts):
                raise CommandError("That description is gone; use /describe again.")
            try:
                spec = imagine_spec(
                    services.registry,
                    prompt=prompts[int(match[2])],
                    tiny=services.tiny_models,
                    random_seed=secrets.randbelow(MAX_SEED + 1),
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            data = (job.reply_target or {}).get("data", {})  # type: ignore[union-attr]
            await submit(
                client,
                services,
                spec,
                request_id=f"slack:action:{body['trigger_id']}",
                channel=data.get("channel") or body["channel"]["id"],
                thread_ts=data.get("thread_ts"),
                workspace=workspace,
            )
        except CommandError as exc:
            await answers.warn(respond, exc)
