"""`atelier inpaint`, `vary`, `zoom`, `pan` and `square`: edit an image file through the queue, like `atelier imagine`.

The image (and mask) are read and checked from their files before any service opens, so bad input exits with
status 2 and a one-line message and nothing is stored or enqueued; only then are they stored as blobs and the
job enqueued with their keys.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from atelier.cli import UsageError, generation_kwargs
from atelier.cli_imagine import read_image_file
from atelier.jobrun import run_and_wait
from atelier.settings import Settings

INPAINT_HELP = """\
modes:
  insertion  paint --prompt into the white area of --mask
  removal    fill the white area of --mask with the surrounding background (no prompt needed)
  outpaint   extend the canvas by --extend pixels per side and paint the new area (--prompt optional)

The mask is an image of the same shape as IMAGE: white repaints, black keeps; it is resized to the image and
thresholded at mid-grey. Pixels beyond a narrow feathering band around the mask are the original's, unchanged.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `inpaint` and `vary` subcommands to the `atelier` parser."""
    from engine.edit_requests import DEFAULT_VARIATION_STRENGTH, MODES
    from jobs.editing import MAX_ZOOM, MIN_ZOOM, PAN_DIRECTIONS, VARY_STRENGTHS

    inpaint = sub.add_parser(
        "inpaint",
        help="repaint part of an image: insert from a prompt, remove, or extend the canvas",
        description=INPAINT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inpaint.add_argument("image", type=Path, help="the image to edit")
    inpaint.add_argument("--mode", required=True, choices=MODES)
    inpaint.add_argument("--mask", type=Path, help="white where the image changes (insertion, removal)")
    inpaint.add_argument("--prompt", default="", help="what to paint (required for insertion)")
    inpaint.add_argument(
        "--extend", help="pixels to add per side (outpaint), e.g. left=256,right=0,top=0,bottom=0"
    )
    _add_common_options(inpaint, "inpainting model preset (default: the registry's inpainting default)")

    vary = sub.add_parser("vary", help="variations of an image (image-to-image), through the queue")
    vary.add_argument("image", type=Path, help="the image to vary")
    how_far = vary.add_mutually_exclusive_group()
    how_far.add_argument(
        "--strength",
        type=float,
        default=DEFAULT_VARIATION_STRENGTH,
        help=f"how far from the image to go: above 0, at most 1 (default: {DEFAULT_VARIATION_STRENGTH:g})",
    )
    for name, strength in VARY_STRENGTHS.items():
        how_far.add_argument(
            f"--{name}",
            dest="strength",
            action="store_const",
            const=strength,
            help=f"Vary ({name.title()}) as the chat buttons do: strength {strength:g}",
        )
    vary.add_argument("--prompt", default="", help="what the variations should show (default: none)")
    _add_common_options(vary, "text-to-image model preset (default: the registry's default)")

    zoom = sub.add_parser(
        "zoom", help="zoom out: extend the canvas on every side and paint the border (outpaint)"
    )
    zoom.add_argument("image", type=Path, help="the image to zoom out of")
    zoom.add_argument(
        "--factor",
        type=_zoom_factor,
        default=2.0,
        help=f"how much larger the result is per side: {MIN_ZOOM:g} to {MAX_ZOOM:g} (default: 2)",
    )
    pan = sub.add_parser("pan", help="pan: extend one side by half the image and paint it (outpaint)")
    pan.add_argument("image", type=Path, help="the image to pan")
    pan.add_argument("--direction", required=True, choices=PAN_DIRECTIONS)
    square = sub.add_parser("square", help="make square: extend the short sides and paint them (outpaint)")
    square.add_argument("image", type=Path, help="the image to make square")
    for parser in (zoom, pan, square):
        parser.add_argument("--prompt", default="", help="what the new area should show (default: none)")
        parser.add_argument("--negative", default="", help="what the image should not contain")
        parser.add_argument(
            "--model",
            help="the model that made the image: its family's inpainting preset paints (default: the "
            "registry's inpainting default)",
        )
        parser.add_argument("--seed", type=int, help="seed (default: random)")
        parser.add_argument(
            "--out", type=Path, default=Path("out"), help="folder for the images (default: out)"
        )


def _zoom_factor(text: str) -> float:
    from jobs.editing import parse_zoom

    try:
        return parse_zoom(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_common_options(parser: argparse.ArgumentParser, model_help: str) -> None:
    parser.add_argument("--negative", default="", help="what the image should not contain")
    parser.add_argument("--model", help=model_help)
    parser.add_argument(
        "--seed", type=int, help="seed of the first image; image i uses seed+i (default: random)"
    )
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument(
        "--guidance", type=float, help="classifier-free guidance scale (default: the model's)"
    )
    parser.add_argument("--count", type=int, help="number of images (default: 1)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for the images (default: out)")


async def _inpaint(settings: Settings, args: argparse.Namespace) -> int:
    from engine.registry import Registry
    from jobs.specs import inpaint_spec, parse_extend

    image = read_image_file(args.image, "the image")
    mask = None if args.mask is None else read_image_file(args.mask, "the mask")
    try:
        spec = inpaint_spec(
            Registry.load(settings.models_file),
            mode=args.mode,
            image=image,
            mask=mask,
            prompt=args.prompt,
            extend=None if args.extend is None else parse_extend(args.extend),
            **generation_kwargs(args, settings, sized=False),
        )
    except ValueError as exc:
        raise UsageError(exc) from None
    from atelier.runtime import Runtime
    from jobs.inputs import store_input

    async with Runtime.open(settings) as runtime:
        keys = {"image": await store_input(runtime.blobs, image)}
        if mask is not None:
            keys["mask"] = await store_input(runtime.blobs, mask)
        return await run_and_wait(runtime, spec.model_copy(update=keys), args.out)


async def _vary(settings: Settings, args: argparse.Namespace) -> int:
    """`atelier vary`, and `atelier imagine --image` (which has the tenant options too): the same Vary job the
    chat bots make for an image-to-image request, so a bot's result can be reproduced here by seed."""
    from engine.registry import Registry
    from jobs.specs import vary_spec
    from quotas.policy import parse_tenant_ref

    image = read_image_file(args.image, "the image")
    try:
        who = (parse_tenant_ref(args.tenant), args.user) if hasattr(args, "tenant") else ()
        spec = vary_spec(
            Registry.load(settings.models_file),
            image=image,
            prompt=args.prompt,
            strength=args.strength,
            **generation_kwargs(args, settings, sized=False),
        )
    except ValueError as exc:
        raise UsageError(exc) from None
    from atelier.runtime import Runtime
    from jobs.inputs import store_input

    async with Runtime.open(settings) as runtime:
        key = await store_input(runtime.blobs, image)
        return await run_and_wait(runtime, spec.model_copy(update={"image": key}), args.out, *who)


async def _outpaint(settings: Settings, args: argparse.Namespace) -> int:
    """`atelier zoom`, `pan` and `square`: the editing loop's outpaints (`jobs.editing`), on an image file."""
    from engine.registry import Registry
    from jobs.editing import Lineage, outpaint_spec, pan_extend, square_extend, zoom_extend

    image = read_image_file(args.image, "the image")
    registry = Registry.load(settings.models_file)
    try:
        if args.model is not None:
            registry.get(args.model)  # an unknown name is refused, not replaced by the default
        if args.command == "zoom":
            extend = zoom_extend(image.size, args.factor)
        elif args.command == "pan":
            extend = pan_extend(image.size, args.direction)
        else:
            extend = square_extend(image.size)
        lineage = Lineage(prompt=args.prompt, negative=args.negative, model=args.model, seed=args.seed)
        spec = outpaint_spec(
            registry,
            image=image,
            extend=extend,
            lineage=lineage,
            tiny=settings.tiny_models,
            random_seed=secrets.randbelow(2**32),
        )
    except ValueError as exc:
        raise UsageError(exc) from None
    from atelier.runtime import Runtime
    from jobs.inputs import store_input

    async with Runtime.open(settings) as runtime:
        key = await store_input(runtime.blobs, image)
        return await run_and_wait(runtime, spec.model_copy(update={"image": key}), args.out)


COMMANDS = {"inpaint": _inpaint, "vary": _vary, "zoom": _outpaint, "pan": _outpaint, "square": _outpaint}
