"""`atelier upscale` and `atelier enhance`: enlarge an image or restore its faces through the queue.

The image is read and checked from its file before any service opens, so bad input (not an image, truncated,
a decompression bomb, too large for the model) exits with status 2 and a one-line message and nothing is
stored or enqueued; only then is it stored as a blob and the job enqueued with its key. `enhance` also says
on stderr whether it found faces: an image without one comes back unchanged, which is not an error.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from atelier.cli import UsageError
from atelier.cli_imagine import read_image_file
from atelier.jobrun import run_and_wait
from atelier.settings import Settings

ENHANCE_HELP = """\
Faces are found with OpenCV's frontal-face detector, restored one by one at the restorer's 512 px size and
pasted back with a feathered edge; nothing outside a face's crop changes. With --upscale the image is
enlarged first and the faces are restored at the larger size.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `upscale` and `enhance` subcommands to the `atelier` parser."""
    upscale = sub.add_parser("upscale", help="enlarge an image 2x or 4x (Real-ESRGAN), through the queue")
    upscale.add_argument("image", type=Path, help="the image to enlarge")
    upscale.add_argument("--scale", type=int, help="2 or 4 (default: 4, or the model's factor)")
    upscale.add_argument("--model", help="upscale model preset (default: the registry's for the scale)")
    upscale.add_argument("--out", type=Path, default=Path("out"), help="folder for the image (default: out)")
    upscale.add_argument(
        "--creative",
        action="store_true",
        help="Upscale (Creative): then rework the enlarged image at low strength, tile by tile, with --prompt "
        "on the text-to-image model (jobs/editing.py)",
    )
    upscale.add_argument("--prompt", default="", help="with --creative: what the image shows")

    enhance = sub.add_parser(
        "enhance",
        help="restore the faces in an image (GFPGAN or CodeFormer), optionally upscaling it first",
        description=ENHANCE_HELP,
    )
    enhance.add_argument("image", type=Path, help="the image to enhance")
    enhance.add_argument("--faces", action="store_true", help="restore faces (required: the enhancement)")
    enhance.add_argument("--upscale", type=int, metavar="SCALE", help="enlarge 2 or 4 times first")
    enhance.add_argument(
        "--model", help="face restorer preset: gfpgan-1.4 or codeformer (default: the registry's)"
    )
    enhance.add_argument(
        "--fidelity",
        type=float,
        help="CodeFormer only: 0 trusts the model's idea of a face, 1 stays closest to the input (default: 0.5)",
    )
    enhance.add_argument("--out", type=Path, default=Path("out"), help="folder for the image (default: out)")


async def _upscale(settings: Settings, args: argparse.Namespace) -> int:
    from engine.registry import Registry
    from jobs.specs import upscale_spec

    image = read_image_file(args.image)
    if args.creative:
        return await _creative_upscale(settings, args, image)
    if args.prompt:
        raise UsageError("--prompt needs --creative (a plain upscale reads no prompt)")
    try:
        spec = upscale_spec(
            Registry.load(settings.models_file),
            image=image,
            scale=args.scale,
            model=args.model,
            tiny=settings.tiny_models,
        )
    except ValueError as exc:
        raise UsageError(exc) from None
    return await _store_and_run(settings, image, spec, args.out)


async def _creative_upscale(settings: Settings, args: argparse.Namespace, image) -> int:
    from engine.registry import Registry
    from jobs.editing import Lineage, creative_upscale_spec

    if args.scale is not None or args.model is not None:
        raise UsageError("--creative runs the default upscaler: leave out --scale and --model")
    try:
        spec = creative_upscale_spec(
            Registry.load(settings.models_file),
            image=image,
            lineage=Lineage(prompt=args.prompt),
            tiny=settings.tiny_models,
            random_seed=secrets.randbelow(2**32),
        )
    except ValueError as exc:
        raise UsageError(exc) from None
    return await _store_and_run(settings, image, spec, args.out)


async def _enhance(settings: Settings, args: argparse.Namespace) -> int:
    from engine.registry import Registry
    from jobs.specs import enhance_spec

    if not args.faces:
        raise UsageError("enhance needs --faces (face restoration); to only enlarge, use `atelier upscale`")
    image = read_image_file(args.image)
    try:
        spec = enhance_spec(
            Registry.load(settings.models_file),
            image=image,
            model=args.model,
            fidelity=args.fidelity,
            upscale=args.upscale,
            tiny=settings.tiny_models,
        )
    except ValueError as exc:
        raise UsageError(exc) from None
    from engine.face_detect import detect_faces

    # The worker detects the same faces on the same pixels; knowing here lets the CLI say what happened.
    faces = len(detect_faces(image))
    status = await _store_and_run(settings, image, spec, args.out)
    if status == 0:
        print(f"atelier: {_faces_note(faces, upscaled=args.upscale is not None)}", file=sys.stderr)
    return status


def _faces_note(faces: int, *, upscaled: bool) -> str:
    if faces:
        return f"{faces} face{'s' if faces != 1 else ''} restored"
    return "no face found" + ("" if upscaled else "; the image is unchanged")


async def _store_and_run(settings: Settings, image, spec, out: Path) -> int:
    from atelier.runtime import Runtime
    from jobs.inputs import store_input

    async with Runtime.open(settings) as runtime:
        key = await store_input(runtime.blobs, image)
        return await run_and_wait(runtime, spec.model_copy(update={"image": key}), out)


COMMANDS = {"upscale": _upscale, "enhance": _enhance}
