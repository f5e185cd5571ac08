"""`atelier replay IMAGE` and `atelier verify IMAGE`: run a generated image's recipe again, and check its
Content Credentials (jobs.recipe, jobs.provenance).

`replay` prints the new image's path like `atelier imagine`. On the same model revision and configuration the
replay encodes to the original's bytes (its PNG without text and manifest equals the original's): the file
written is then the original, byte for byte, recipe and Content Credentials included, since they describe
exactly these pixels; stderr says so. Otherwise the file is the replay as made (its own recipe and signature)
and stderr says how far it is from the original (jobs.recipe.compare). `verify` prints a verdict and
exits 0 when the manifest is valid, marks the image AI-generated, binds the recipe as found, and was signed by a
certificate this installation trusts (`--any-signer`: by anyone), else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from atelier.cli import UsageError, _add_tenant_options
from atelier.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser("replay", help="generate an Atelier image again from the recipe it carries")
    replay.add_argument("image", type=Path, help="a PNG made by Atelier")
    replay.add_argument("--out", type=Path, default=Path("out"), help="folder for the image (default: out)")
    _add_tenant_options(replay)
    verify = sub.add_parser("verify", help="check an image's Content Credentials (C2PA) and recipe")
    verify.add_argument("image", type=Path, help="the image to check")
    verify.add_argument(
        "--any-signer", action="store_true", help="accept a valid signature by any certificate, not only ours"
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


async def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from jobs import provenance, recipe

    data = _read(args.image)
    text = recipe.read_text(data)
    verdict = await asyncio.to_thread(provenance.check, data, text, settings.c2pa_trust())
    print(provenance.describe(verdict, any_signer=args.any_signer))
    if text is not None and verdict.recipe_bound:
        try:
            print(f"recipe: {_summary(recipe.parse(text))}")
        except recipe.RecipeError as exc:  # signed, but not by an Atelier (accepted with --any-signer)
            print(f"recipe: {exc}")
    return 0 if verdict.ok(any_signer=args.any_signer) else 1


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from engine.registry import Registry
    from jobs import recipe
    from quotas.policy import parse_tenant_ref

    # Everything but the tenant's own LoRAs is checked before any service starts: bad input leaves nothing.
    data = _read(args.image)
    try:
        tenant = parse_tenant_ref(args.tenant)
        found = await asyncio.to_thread(recipe.signed_recipe, data)
        registry = Registry.load(settings.models_file)
        if not found["spec"].get("loras"):
            recipe.replay_spec(registry, found, tiny=settings.tiny_models)
    except recipe.RecipeError as exc:
        raise UsageError(f"{args.image}: {exc}") from None
    except ValueError as exc:
        raise UsageError(exc) from None
    _note_other_weights(settings, registry, found)
    from atelier.jobrun import run_and_wait
    from atelier.runtime import Runtime
    from engine.lora import LoraLibrary
    from jobs.training import tenant_loras
    from storage.models import get_or_create_tenant

    async with Runtime.open(settings) as runtime:
        view = await tenant_loras(await get_or_create_tenant(*tenant), LoraLibrary(settings.loras_dir))
        try:
            spec = recipe.replay_spec(registry, found, tiny=settings.tiny_models, loras=view)
        except recipe.RecipeError as exc:
            raise UsageError(f"{args.image}: {exc}") from None
        return await run_and_wait(
            runtime, spec, args.out, tenant, args.user, finish=lambda path: _settle(path, args.image, data)
        )


def _settle(path: Path, original_path: Path, original: bytes) -> None:
    """Keep the original's bytes at `path` when the replay made the same image; say which it is on stderr."""
    from jobs.recipe import compare

    same, said = compare(path.read_bytes(), original, str(original_path))
    if same:
        path.write_bytes(original)
    print(f"atelier: {said}", file=sys.stderr)


def _summary(found: dict) -> str:
    spec, image = found.get("spec", {}), found.get("image", {})
    parts = [f"{found.get('kind')} on {spec.get('model')}", f"seed {image.get('seed', spec.get('seed'))}"]
    if "width" in spec:
        parts.append(f"{spec['width']}x{spec['height']}")
    if "steps" in spec:
        parts.append(f"{spec['steps']} steps")
    parts += [f"LoRA {name}:{weight}" for name, weight in spec.get("loras") or []]
    parts.append(f"Atelier {found.get('atelier')}")
    return ", ".join(parts)


def _note_other_weights(settings: Settings, registry, found: dict) -> None:
    """Say so when this machine's weights of a recipe's model hash differently: the replay runs, but its pixels
    need not match."""
    from engine.fingerprint import FileDigests, model_identity

    digests = FileDigests()
    for recorded in found.get("models") or []:
        if recorded.get("preset") not in registry.names() or not recorded.get("sha256"):
            continue
        here = model_identity(registry.get(recorded["preset"]), settings.models_dir, digests)
        if here["sha256"] and here["sha256"] != recorded["sha256"]:
            print(
                f"atelier: note: {recorded['preset']}'s weights here differ from the recipe's "
                f"(sha256 {here['sha256'][:12]} vs {recorded['sha256'][:12]}): the pixels may differ",
                file=sys.stderr,
            )


COMMANDS = {"replay": _replay, "verify": _verify}
