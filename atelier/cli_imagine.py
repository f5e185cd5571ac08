"""`atelier imagine` and `atelier demo`: generate from a terminal through the same path as a chat command
(validate, record, enqueue, follow; see atelier.jobrun for how a job is followed and served)."""

from __future__ import annotations

import argparse
from pathlib import Path

from atelier.cli import UsageError, _add_generation_options, _add_tenant_options, generation_kwargs
from atelier.jobrun import run_and_wait
from atelier.settings import Settings

DEMO_PROMPT = "a lighthouse on a cliff at dawn, watercolour"
LANE_CHOICES = ("auto", "fast", "relax")


def add_lane_options(p: argparse.ArgumentParser) -> None:
    """`--relax` / `--fast`: this request's lane (jobs.relax); neither: the person's default (`atelier lane`)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--relax",
        dest="lane",
        action="store_const",
        const="relax",
        help="run in the relax lane: only on idle GPU time, not charged against the fast budget",
    )
    group.add_argument(
        "--fast",
        dest="lane",
        action="store_const",
        const="fast",
        help="run in the fast lane only: refused once the fast budget is spent",
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    imagine = sub.add_parser("imagine", help="generate images from a prompt, through the queue")
    imagine.add_argument("prompt")
    _add_generation_options(imagine)
    _add_tenant_options(imagine)
    imagine.add_argument(
        "--lora",
        action="append",
        metavar="NAME[:WEIGHT]",
        help="apply a LoRA from ATELIER_LORA_DIR at a weight (default 1), e.g. ink:0.8; repeatable",
    )
    imagine.add_argument(
        "--enhance-faces", action="store_true", help="restore faces after generation (GFPGAN by default)"
    )
    imagine.add_argument(
        "--image",
        type=Path,
        help="a starting image: image-to-image, the result follows its layout and colours (it sets the size; "
        "the same job as `atelier vary IMAGE --prompt PROMPT` and the chat bots' /imagine with an image)",
    )
    imagine.add_argument(
        "--strength",
        type=float,
        help="with --image: how far from it to go, above 0, at most 1 (default: 0.6)",
    )

    add_lane_options(imagine)
    from atelier.cli_guided import add_guidance_options
    from jobs.styles import BUILT_IN

    add_guidance_options(imagine)
    params = imagine.add_argument_group("prompt parameters (as in chat: jobs/prompt_params.py)")
    params.add_argument("--style", help=f"a named prompt template: {', '.join(BUILT_IN)}")
    params.add_argument("--tile", action="store_true", help="seamless tiling (not on Flux)")
    params.add_argument("--chaos", type=int, default=0, help="0-100: variety between the images of one job")
    params.add_argument(
        "--stylize", type=int, help="0-1000, onto guidance: 100 the model's default, 0 literal, 1000 loose"
    )

    lane = sub.add_parser(
        "lane",
        help="show or set a person's default lane (fast, relax or auto), as /settings does in a chat",
        description="auto: the fast lane while the fast budget lasts, then the relax lane where the tier allows "
        "it; fast: refused once the fast budget is spent; relax: always the relax lane (idle GPU time only, not "
        "charged against the fast budget).",
    )
    lane.add_argument("lane", nargs="?", choices=LANE_CHOICES, help="the new default (leave out to show it)")
    _add_tenant_options(lane)

    demo = sub.add_parser(
        "demo", help="imagine a fixed prompt with the tiny model, offline, on embedded defaults"
    )
    demo.add_argument("--out", type=Path, default=Path("out"), help="folder for the images (default: out)")
    _add_tenant_options(demo)


async def _imagine(settings: Settings, args: argparse.Namespace) -> int:
    from atelier.cli_guided import imagine_guided, wants_guidance

    if wants_guidance(args):
        return await imagine_guided(settings, args)
    if getattr(args, "image", None) is not None:
        return await _imagine_from_image(settings, args)
    if getattr(args, "strength", None) is not None:
        raise UsageError("--strength needs --image")
    # Validate before any service starts, so bad input costs nothing and leaves nothing behind.
    from bots.commands import parse_lora
    from engine.lora import LoraLibrary, check_loras
    from engine.registry import Registry
    from jobs.specs import imagine_spec
    from quotas.policy import parse_tenant_ref

    try:
        tenant = parse_tenant_ref(args.tenant)
        if not args.user:
            raise ValueError("--user needs the id of the person asking")
        loras = [parse_lora(text) for text in getattr(args, "lora", None) or []]
        spec = imagine_spec(
            Registry.load(settings.models_file),
            prompt=args.prompt,
            **generation_kwargs(args, settings),
            enhance_faces=getattr(args, "enhance_faces", False),
            style=getattr(args, "style", None),  # `atelier demo` has none of these
            tile=getattr(args, "tile", False),
            chaos=getattr(args, "chaos", 0),
            stylize=getattr(args, "stylize", None),
            hires=getattr(args, "hires", None),  # here only 1 (off): a scale is guided
        )
        check_loras(loras)  # count, repeats, weights; the names need the tenant's LoRAs, read below
        library = LoraLibrary(settings.loras_dir)
        if not _database_exists(settings.database_url):
            check_loras(loras, library)  # no database yet, so no tenant has LoRAs of its own
    except ValueError as exc:
        raise UsageError(exc) from None
    from atelier.runtime import Runtime

    async with Runtime.open(settings) as runtime:
        if loras:
            spec = await _with_tenant_loras(spec, loras, tenant, library)
        return await run_and_wait(runtime, spec, args.out, tenant, args.user, getattr(args, "lane", None))


async def _imagine_from_image(settings: Settings, args: argparse.Namespace) -> int:
    """`atelier imagine PROMPT --image PATH`: refuse what image-to-image cannot take, then run it as `vary`."""
    from atelier.cli_edit import _vary
    from engine.edit_requests import DEFAULT_VARIATION_STRENGTH

    for flag, given in (
        ("--size", args.size),
        ("--ar", args.aspect),
        ("--lora", args.lora),
        ("--enhance-faces", args.enhance_faces),
        ("--style", args.style),
        ("--tile", args.tile),
        ("--chaos", args.chaos),
        ("--stylize", args.stylize is not None),
        ("--hires", args.hires is not None),
    ):
        if given:
            raise UsageError(
                f"{flag} does not work with --image (the image sets the size; no LoRAs, faces or "
                "text-to-image parameters)"
            )
    if args.strength is None:
        args.strength = DEFAULT_VARIATION_STRENGTH
    return await _vary(settings, args)


def _database_exists(url: str) -> bool:
    """False only for a SQLite file not created yet (nothing has run here): what can be refused without it is."""
    path = url.removeprefix("sqlite://") if url.startswith("sqlite://") else None
    return path is None or path == ":memory:" or Path(path).exists()


async def _with_tenant_loras(spec, loras, tenant_ref: tuple[str, str], library):
    """`spec` with its LoRAs as the tenant sees them: its own trained ones (scoped names) or the shared folder's;
    UsageError naming a LoRA the tenant does not have."""
    from engine.lora import check_loras
    from jobs.training import tenant_loras
    from storage.models import get_or_create_tenant

    view = await tenant_loras(await get_or_create_tenant(*tenant_ref), library)
    try:
        check_loras(loras, view)
    except ValueError as exc:
        raise UsageError(exc) from None
    return spec.model_copy(update={"loras": [(view.spec_name(name), float(w)) for name, w in loras]})


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    args.prompt, args.negative, args.model, args.seed = DEMO_PROMPT, "", None, 1234
    args.size = args.aspect = args.steps = args.guidance = args.count = None
    return await _imagine(settings, args)


def read_image_file(path: Path, what: str = "the image"):  # -> PIL.Image.Image (Pillow is imported lazily)
    """An image file given on the command line, decoded and normalised to RGB, or a UsageError saying why it
    cannot be used. Runs before any service opens, so bad input leaves nothing behind."""
    from jobs.inputs import MAX_INPUT_BYTES, InputImageError, read_image

    try:
        if path.stat().st_size > MAX_INPUT_BYTES:  # refuse before reading a huge file into memory
            raise UsageError(
                f"{what} {path} is {path.stat().st_size / 2**20:.1f} MiB; "
                f"the limit is {MAX_INPUT_BYTES / 2**20:.0f} MiB"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        return read_image(data, name=f"{what} {path}")
    except InputImageError as exc:
        raise UsageError(exc) from None


async def _lane(settings: Settings, args: argparse.Namespace) -> int:
    """`atelier lane [auto|fast|relax]`: the person's default lane in the tenant, shown or set."""
    from quotas.policy import parse_tenant_ref

    try:
        platform, external_id = parse_tenant_ref(args.tenant)
    except ValueError as exc:
        raise UsageError(exc) from None
    from storage.db import close_db, init_db
    from storage.models import get_or_create_tenant
    from storage.settings import settings_for, update_settings

    await init_db(settings.database_url)
    try:
        if args.lane is not None:
            tenant = await get_or_create_tenant(platform, external_id)
            await update_settings(tenant, args.user, lane="" if args.lane == "auto" else args.lane)
        member = await settings_for(platform, external_id, args.user)
        print((member.lane if member else "") or "auto")
    finally:
        await close_db()
    return 0


COMMANDS = {"imagine": _imagine, "demo": _demo, "lane": _lane}
