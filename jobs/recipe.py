"""The recipe of a generated image: everything that decides its pixels, carried in the PNG itself, and the
replay that runs it again.

A recipe is JSON in an iTXt chunk keyed `atelier:recipe`: the job's kind and its whole spec as stored (prompt,
negative, model preset, size, steps, guidance, seed, count, LoRAs with weights, tiling, chaos, faces, …), which
image of the job this is (its index, seed and the guidance it ran at), each model's preset, source, revision,
scheduler and content hash (engine.fingerprint), each LoRA's file hash, and the Atelier version. It holds no
time, job id, user or server, so equal requests give equal recipes. The C2PA manifest (jobs.provenance) binds it
by its hash. A recipe states the prompt in the open: whoever receives the file can read it.

Replay covers images made from a prompt (kind `imagine`): it asks for that one image again, with its seed,
guidance and settings, count 1, as `atelier imagine` would (`jobs.specs.imagine_spec`, every check included).
On the same model revision and configuration the replay encodes to the very bytes the original's pixels did
(`compare`); its own file differs in the recipe (count 1, index 0) and in a new signature (each C2PA signing
salts its assertions at random, jobs.provenance), so `atelier replay` then keeps the original file, whose recipe
and credentials describe exactly those pixels. An image made from another image (variations, edits, upscales)
records its input by blob key only, so it is not replayed.
"""

from __future__ import annotations

import io
import json
from importlib import metadata

from engine.lora import TenantLoras, split_scoped
from engine.registry import Registry, UnknownModelError
from jobs.prompt_params import image_guidance
from jobs.specs import Imagine, imagine_spec

RECIPE_KEY = "atelier:recipe"
FORMAT = "atelier-recipe/1"
REPLAYABLE = ("imagine",)


class RecipeError(ValueError):
    """The image has no readable recipe, or one that cannot be replayed here: the message says which."""


def atelier_version() -> str:
    try:
        return metadata.version("atelier")
    except metadata.PackageNotFoundError:
        return "unknown"


def build(kind: str, spec: dict, *, index: int, seed: int, models: list[dict], loras: list[dict]) -> str:
    """The recipe of image `index` (seeded `seed`) of a job of `kind` with `spec`, as the text to embed."""
    image: dict = {"index": index, "seed": seed}
    if kind == "imagine":
        image["guidance"] = image_guidance(spec["guidance"], spec.get("chaos", 0), seed, index)
    recipe = {
        "format": FORMAT,
        "atelier": atelier_version(),
        "kind": kind,
        "image": image,
        "spec": spec,
        "models": models,
        "loras": loras,
    }
    return json.dumps(recipe, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def read_text(data: bytes) -> str | None:
    """The recipe text embedded in an image's bytes, or None when it has none (or is not an image)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            text = getattr(image, "text", {}).get(RECIPE_KEY)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return text if isinstance(text, str) else None


def signed_recipe(data: bytes) -> dict:
    """The recipe of an image, checked against its C2PA manifest (a valid signature by any signer, and the
    recipe's hash bound in it): RecipeError saying what is wrong (no recipe, no manifest, an edited recipe)."""
    from jobs.provenance import check

    text = read_text(data)
    if text is None:
        raise RecipeError(
            "this image has no Atelier recipe: it was not made by Atelier, or its metadata was removed on the "
            "way (a re-encoded or resized copy)"
        )
    verdict = check(data, text)
    if verdict.problems:
        raise RecipeError("; ".join(verdict.problems))
    return parse(text)


def parse(text: str) -> dict:
    """The recipe as data; RecipeError when it is not one Atelier wrote."""
    try:
        recipe = json.loads(text)
    except ValueError:
        raise RecipeError("the image's recipe is not valid JSON") from None
    if (
        not isinstance(recipe, dict)
        or recipe.get("format") != FORMAT
        or not isinstance(recipe.get("spec"), dict)
    ):
        raise RecipeError(f"the image's recipe is not an {FORMAT} recipe")
    return recipe


def compare(replayed: bytes, original: bytes, name: str = "the original") -> tuple[bool, str]:
    """Whether the replay made the original's image, byte for byte once each file's text and manifest are set
    aside (engine.output.pixels_only), and a sentence saying what was found."""
    from engine.output import pixels_only

    if pixels_only(replayed) == pixels_only(original):
        return True, (
            f"the replay is {name}, byte for byte: its pixels encode to the same PNG, so the file is the "
            "original's, recipe and Content Credentials included"
        )
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(replayed)) as new, Image.open(io.BytesIO(original)) as old:
        if new.size != old.size or new.mode != old.mode:
            found = (
                f"it is {new.width}x{new.height} {new.mode}, the original {old.width}x{old.height} {old.mode}"
            )
        else:
            a, b = np.asarray(new, dtype=np.int16), np.asarray(old, dtype=np.int16)
            differ = int(np.count_nonzero(a != b))
            found = (
                "its pixels are equal but encoded differently"
                if differ == 0
                else f"{differ} of {a.size} pixel values differ, by up to {int(np.abs(a - b).max())} of 255"
            )
    return False, (
        f"the replay differs from {name}: {found} (another model revision, configuration or machine?); the "
        "file carries the replay's own recipe and signature"
    )


def replay_spec(
    registry: Registry, recipe: dict, *, tiny: bool = False, loras: TenantLoras | None = None
) -> Imagine:
    """The spec that makes the recipe's image again, for a tenant whose LoRAs are `loras`. RecipeError naming
    what cannot be replayed: another kind of job, a model this installation does not have (or runs as its tiny
    counterpart), a LoRA the tenant does not have."""
    kind = recipe.get("kind")
    if kind not in REPLAYABLE:
        raise RecipeError(
            f"this image was made by {kind!r} from another image; replay covers images made from a prompt"
        )
    spec, image = recipe["spec"], recipe.get("image") or {}
    model = spec.get("model")
    try:
        preset = registry.resolve(model, role="txt2img", tiny=tiny)
    except (UnknownModelError, ValueError):
        raise RecipeError(f"the recipe's model {model!r} is not installed here") from None
    if preset.name != model:
        raise RecipeError(
            f"the recipe's model {model!r} runs as {preset.name!r} here (ATELIER_TINY_MODELS), so a replay "
            "would not be the same image"
        )
    typed = [(_typed_lora(name, loras), weight) for name, weight in spec.get("loras") or []]
    try:
        rebuilt = imagine_spec(
            registry,
            prompt=spec["prompt"],
            negative=spec.get("negative", ""),
            model=model,
            size=f"{spec['width']}x{spec['height']}",
            steps=spec["steps"],
            guidance=image.get("guidance", spec["guidance"]),
            seed=image.get("seed", spec["seed"]),
            count=1,
            tiny=tiny,
            loras=typed,
            lora_library=loras,
            enhance_faces=bool(spec.get("enhance_faces")),
            tile=bool(spec.get("tile")),
            **({"hires": spec["hires"]} if spec.get("hires") is not None else {}),
        )
    except KeyError as missing:
        raise RecipeError(f"the recipe has no {missing.args[0]!r}") from None
    except ValueError as exc:
        raise RecipeError(f"the recipe cannot run here: {exc}") from None
    if loras is not None:
        rebuilt = rebuilt.model_copy(update={"loras": [(loras.spec_name(n), w) for n, w in rebuilt.loras]})
    return rebuilt.model_copy(update={"style": spec.get("style")})


def _typed_lora(name: str, loras: TenantLoras | None) -> str:
    """The name the tenant would type for the recipe's LoRA `name`: its own trained LoRA of a scoped name, or a
    shared one; RecipeError when the tenant has no such LoRA."""
    base, lora_id = split_scoped(name)
    if lora_id is None:
        if loras is None or name not in loras.names():
            raise RecipeError(f"the recipe's LoRA {name!r} is not installed here")
        return name
    if loras is None or loras.own.get(base) != lora_id:
        raise RecipeError(
            f"the recipe's LoRA {base!r} was trained by another server or account: it is not yours"
        )
    return base
