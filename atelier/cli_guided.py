"""Guided generation at the terminal: `atelier imagine ... --control canny --image SRC` (and `--control-image`,
`--sref`, `--cref`, `--hires`) and `atelier blend IMAGE IMAGE [IMAGE…]`, through the same `Guided` job the chat
bots enqueue (jobs.guided). Images are read and checked before any service opens, so bad input exits with
status 2 and one line, and nothing is stored, queued or charged."""

from __future__ import annotations

import argparse
from pathlib import Path

from atelier.cli import UsageError, _add_generation_options, _add_tenant_options, generation_kwargs
from atelier.cli_imagine import read_image_file
from atelier.jobrun import run_and_wait
from atelier.settings import Settings


def add_guidance_options(parser: argparse.ArgumentParser) -> None:
    """The guidance flags of `atelier imagine`."""
    parser.add_argument(
        "--control",
        choices=("canny", "depth", "openpose"),
        help="follow --image through a ControlNet: canny edges or depth computed from it; openpose needs the "
        "pose image itself (--control-image)",
    )
    parser.add_argument("--control-image", type=Path, help="the condition image itself (edges, depth, pose)")
    parser.add_argument(
        "--control-weight", type=float, default=1.0, help="ControlNet strength, 0–2 (default 1)"
    )
    parser.add_argument(
        "--sref", type=Path, action="append", default=[], help="style reference image; repeatable"
    )
    parser.add_argument(
        "--cref",
        type=Path,
        action="append",
        default=[],
        help="content (character) reference image; repeatable",
    )
    parser.add_argument(
        "--sref-weight", type=float, default=1.0, help="style reference weight, 0–2 (default 1)"
    )
    parser.add_argument(
        "--cref-weight", type=float, default=1.0, help="content reference weight, 0–2 (default 1)"
    )
    parser.add_argument(
        "--hires",
        type=float,
        metavar="SCALE",
        help="hires fix: generate at the size asked for, then upscale by this factor (at most 2) and refine in "
        "a second pass. A size above the model's native resolution (its default size, at that aspect ratio) "
        "gets it by default: generated at the native size, then upscaled and refined at the size asked for; "
        "--hires 1 turns that off and generates directly at the size asked for",
    )


def wants_guidance(args: argparse.Namespace) -> bool:
    from engine.guided_requests import scales_hires

    return bool(
        getattr(args, "control", None)
        or getattr(args, "control_image", None)
        or getattr(args, "sref", None)
        or getattr(args, "cref", None)
        or scales_hires(getattr(args, "hires", None))  # `--hires 1` (off) alone stays a plain imagine
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    blend = sub.add_parser("blend", help="combine 2–5 images into new ones (IP-Adapter), through the queue")
    blend.add_argument("images", type=Path, nargs="+", help="2 to 5 images")
    blend.add_argument("--prompt", default="", help="what the result should show too (optional)")
    blend.add_argument("--weight", type=float, default=1.0, help="weight of every image, 0–2 (default 1)")
    _add_generation_options(blend)
    _add_tenant_options(blend)

    describe = sub.add_parser("describe", help="four prompts that would make an image like IMAGE, one a line")
    describe.add_argument("image", type=Path)
    describe.add_argument("--out", type=Path, default=Path("out"), help=argparse.SUPPRESS)
    _add_tenant_options(describe)


async def imagine_guided(settings: Settings, args: argparse.Namespace) -> int:
    """`atelier imagine PROMPT` with guidance flags: with --control, --image is what the condition is computed
    from (or, with --control-image, the condition itself)."""
    if args.control and args.image is None and args.control_image is None:
        raise UsageError(f"--control {args.control} needs --image (or --control-image)")
    if args.image is not None and args.control_image is not None:
        raise UsageError("give --image or --control-image, not both")
    if args.image is not None and not args.control:
        raise UsageError("--image with guidance needs --control (without, --image makes variations)")
    for flag, given in (
        ("--lora", args.lora),
        ("--enhance-faces", args.enhance_faces),
        ("--strength", args.strength),
    ):
        if given:
            raise UsageError(f"{flag} does not work with --control, --sref, --cref or --hires")
    source = args.control_image or args.image
    control_image = None if source is None else read_image_file(source, "the control image")
    references = [(read_image_file(p, "the style reference"), "style", args.sref_weight) for p in args.sref]
    references += [
        (read_image_file(p, "the content reference"), "content", args.cref_weight) for p in args.cref
    ]
    return await _run(
        settings,
        args,
        prompt=args.prompt,
        control=args.control,
        control_image=control_image,
        control_given=args.control_image is not None,
        control_weight=args.control_weight,
        references=references,
        hires=args.hires,
    )


async def _blend(settings: Settings, args: argparse.Namespace) -> int:
    from engine.guided_requests import MAX_BLEND_IMAGES, MIN_BLEND_IMAGES

    if not MIN_BLEND_IMAGES <= len(args.images) <= MAX_BLEND_IMAGES:
        raise UsageError(
            f"a blend takes {MIN_BLEND_IMAGES} to {MAX_BLEND_IMAGES} images (got {len(args.images)})"
        )
    references = [(read_image_file(p, "the image"), "blend", args.weight) for p in args.images]
    return await _run(settings, args, prompt=args.prompt, references=references)


async def _run(settings: Settings, args: argparse.Namespace, **guidance) -> int:
    from engine.registry import Registry
    from jobs.guided import guided_spec, store_guided_inputs
    from quotas.policy import parse_tenant_ref

    try:
        tenant = parse_tenant_ref(args.tenant)
        spec = guided_spec(
            Registry.load(settings.models_file),
            **generation_kwargs(args, settings),
            **guidance,
        )
    except ValueError as exc:
        raise UsageError(exc) from None
    from atelier.runtime import Runtime

    async with Runtime.open(settings) as runtime:
        spec = await store_guided_inputs(
            runtime.blobs, spec, guidance.get("control_image"), guidance.get("references", [])
        )
        return await run_and_wait(runtime, spec, args.out, tenant, args.user)


async def _describe(settings: Settings, args: argparse.Namespace) -> int:
    from engine.registry import Registry
    from jobs.describe import describe_spec
    from quotas.policy import parse_tenant_ref

    image = read_image_file(args.image, "the image")
    try:
        tenant = parse_tenant_ref(args.tenant)
        spec = describe_spec(Registry.load(settings.models_file), image=image, tiny=settings.tiny_models)
    except ValueError as exc:
        raise UsageError(exc) from None
    from atelier.runtime import Runtime
    from jobs.inputs import store_input

    async with Runtime.open(settings) as runtime:
        spec = spec.model_copy(update={"image": await store_input(runtime.blobs, image)})
        return await run_and_wait(runtime, spec, args.out, tenant, args.user)


COMMANDS = {"blend": _blend, "describe": _describe}
