"""LoRA training for the SD 1.5 and SDXL families: a folder of images in, a diffusers LoRA file out.

`train_lora` blocks (the worker runs it on its GPU thread). It adds a peft LoRA to the UNet's attention layers,
trains it on the dataset with the standard noise-prediction loss, reports (step, total, loss) after every step
(what the callback raises propagates: that is how training is cancelled), saves a checkpoint every
`checkpoint_every` steps and after the last one (handing each to an `on_checkpoint` callback, which the worker
uses to copy it where any machine can read it), resumes from the checkpoint in `checkpoint_dir` when there is
one, and writes the result with the pipeline class's own `save_lora_weights`, so `load_lora_weights` reads it back.

Defaults per family (`defaults_for`), chosen as the common community recipes for a character or style LoRA:

| family | rank | alpha | steps | learning rate | batch | resolution |
|---|---|---|---|---|---|---|
| sd15 | 16 | 16 | 1500 | 1e-4 | 1 | 512 |
| sdxl | 32 | 32 | 2000 | 1e-4 | 1 | 1024 |

On CUDA the frozen weights stay in the engine's half dtype, the LoRA weights in float32, and the forward pass runs
under autocast with gradient checkpointing; on the CPU everything is float32 (slow, but what tests use).
Images are resized to cover an aspect bucket (the bucket of about resolution² pixels closest to their aspect
ratio) and center-cropped to it; a step draws its batch from one bucket, so a batch has one shape.
Flux cannot be trained here: its transformer needs a different recipe (and far more memory).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps

from engine.building import seeded
from engine.training_config import (  # noqa: F401 (re-exported: the training API in one place)
    CHECKPOINT_FILE,
    FAMILY_DEFAULTS,
    IMAGE_SUFFIXES,
    LORA_TARGETS,
    MAX_ASPECT,
    MAX_IMAGES,
    MIN_IMAGES,
    TRAINABLE_FAMILIES,
    TrainingConfig,
    TrainProgress,
    check_trainable,
    defaults_for,
)


@dataclass(frozen=True)
class Example:
    """One training image and its caption."""

    path: Path
    caption: str


def read_dataset(folder: Path, trigger: str) -> list[Example]:
    """The images in `folder` (not its subfolders), sorted by name, each captioned by the `.txt` beside it or,
    without one, by the trigger word. ValueError for too few or too many images."""
    images = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not MIN_IMAGES <= len(images) <= MAX_IMAGES:
        raise ValueError(
            f"a LoRA needs between {MIN_IMAGES} and {MAX_IMAGES} images (found {len(images)} in the dataset)"
        )
    examples = []
    for path in images:
        caption_file = path.with_suffix(".txt")
        caption = caption_file.read_text(errors="replace").strip() if caption_file.is_file() else ""
        examples.append(Example(path, caption or trigger))
    return examples


def aspect_buckets(resolution: int) -> list[tuple[int, int]]:
    """(width, height) pairs of at most resolution² pixels and aspect at most 2:1, sides multiples of 64 (8
    below 256 px, for tiny test models)."""
    step = 64 if resolution >= 256 else 8
    buckets = set()
    for width in range(step, 2 * resolution + 1, step):
        height = (resolution * resolution // width) // step * step
        if height >= step and max(width / height, height / width) <= MAX_ASPECT:
            buckets.add((width, height))
    return sorted(buckets)


def bucket_for(size: tuple[int, int], buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to that of `size` (in log space: 2:1 and 1:2 are equally far)."""
    aspect = math.log(size[0] / size[1])
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))


def fit_to_bucket(image: Image.Image, bucket: tuple[int, int]) -> Image.Image:
    """Resize `image` to cover `bucket`, then crop its center to exactly that size."""
    return ImageOps.fit(image.convert("RGB"), bucket, Image.Resampling.LANCZOS, centering=(0.5, 0.5))


@dataclass
class TrainResult:
    """What training made: the LoRA file, sample images made with it, the step it resumed at (0: fresh) and
    the last loss."""

    lora_path: Path
    samples: list[Image.Image] = field(default_factory=list)
    resumed_at: int = 0
    last_loss: float = float("nan")


def train_lora(
    pipeline: Any,
    family: str,
    examples: list[Example],
    config: TrainingConfig,
    *,
    output: Path,
    checkpoint_dir: Path,
    trigger: str,
    progress: TrainProgress | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
) -> TrainResult:
    """Train a LoRA for `pipeline` (a freshly loaded SD 1.5 or SDXL pipeline, on its device; it is modified:
    do not share it) and write it to `output` (a `.safetensors` path), replacing it atomically.

    Resumes from `checkpoint_dir/checkpoint.pt` when present (a checkpoint written by this function for the
    same config); one from the last step trains nothing more. `on_checkpoint(path)` is called in this thread
    after each checkpoint is written, before training goes on; what it raises stops training. Sample images
    of the trigger word, made with the LoRA, come back in the result.
    """
    from diffusers import DDPMScheduler
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    check_trainable(type(pipeline).__name__, family)
    if not examples:
        raise ValueError("the dataset has no images")
    device = pipeline.unet.device
    cuda = device.type == "cuda"
    weight_dtype = pipeline.unet.dtype
    unet = pipeline.unet
    for module in _frozen_modules(pipeline):
        module.requires_grad_(False)
    with seeded(config.seed):  # the same seed starts from the same LoRA weights
        unet.add_adapter(
            LoraConfig(
                r=config.rank,
                lora_alpha=config.alpha,
                init_lora_weights="gaussian",
                target_modules=LORA_TARGETS,
            )
        )
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()  # LoRA weights train in float32 even when the frozen model is half
    if cuda:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=1e-2)
    scaler = torch.amp.GradScaler("cuda") if cuda and weight_dtype == torch.float16 else None
    noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)

    batches = _encode(pipeline, family, examples, config.resolution)
    start = 0
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        set_peft_model_state_dict(unet, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    loss_value = float("nan")
    unet.train()
    for step in range(start + 1, config.steps + 1):
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)  # resumable: fixed per step
        latents, conditioning = _draw(batches, config.batch_size, generator)
        noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
        timesteps = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator
        ).to(device)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        if noise_scheduler.config.prediction_type == "v_prediction":
            target = noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        with torch.autocast(device.type, dtype=weight_dtype, enabled=cuda):
            predicted = unet(noisy.to(weight_dtype), timesteps, **conditioning).sample
        loss = torch.nn.functional.mse_loss(predicted.float(), target.float())
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        loss_value = float(loss.detach())
        if step % config.checkpoint_every == 0 or step == config.steps:
            state = {
                "lora": get_peft_model_state_dict(unet),
                "optimizer": optimizer.state_dict(),
                "step": step,
            }
            _atomic_save(lambda path, state=state: torch.save(state, path), checkpoint)
            if on_checkpoint is not None:
                on_checkpoint(checkpoint)
        if progress is not None:
            progress(step, config.steps, loss_value)
    unet.eval()
    _save_lora(pipeline, Path(output))
    samples = _samples(pipeline, trigger, config) if config.sample_count else []
    return TrainResult(Path(output), samples, resumed_at=start, last_loss=loss_value)


def checkpoint_step(checkpoint: Path) -> int:
    """The step a checkpoint written by `train_lora` was saved at."""
    return int(torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["step"])


def _frozen_modules(pipeline: Any) -> list[torch.nn.Module]:
    names = ("unet", "vae", "text_encoder", "text_encoder_2")
    return [m for m in (getattr(pipeline, n, None) for n in names) if isinstance(m, torch.nn.Module)]


@dataclass
class _Bucket:
    latents: list[torch.Tensor]
    conditioning: list[dict[str, torch.Tensor]]


@torch.no_grad()
def _encode(pipeline: Any, family: str, examples: list[Example], resolution: int) -> list[_Bucket]:
    """Each image's latents and each caption's text conditioning, computed once (the encoders are frozen and
    the crop is fixed), grouped by aspect bucket."""
    device, dtype = pipeline.unet.device, pipeline.unet.dtype
    buckets: dict[tuple[int, int], _Bucket] = {}
    sizes = aspect_buckets(resolution)
    for example in examples:
        with Image.open(example.path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        bucket = bucket_for(image.size, sizes)
        pixels = pipeline.image_processor.preprocess(fit_to_bucket(image, bucket)).to(
            device, pipeline.vae.dtype
        )
        latents = pipeline.vae.encode(pixels).latent_dist.mode() * pipeline.vae.config.scaling_factor
        entry = buckets.setdefault(bucket, _Bucket([], []))
        entry.latents.append(latents[0].to(dtype))
        entry.conditioning.append(_conditioning(pipeline, family, example.caption, bucket))
    return list(buckets.values())


def _conditioning(pipeline: Any, family: str, caption: str, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    device = pipeline.unet.device
    if family == "sd15":
        embeds, _ = pipeline.encode_prompt(caption, device, 1, False)
        return {"encoder_hidden_states": embeds[0]}
    embeds, _, pooled, _ = pipeline.encode_prompt(caption, device=device, do_classifier_free_guidance=False)
    width, height = size
    time_ids = torch.tensor([height, width, 0, 0, height, width], dtype=embeds.dtype, device=device)
    return {"encoder_hidden_states": embeds[0], "text_embeds": pooled[0], "time_ids": time_ids}


def _draw(
    buckets: list[_Bucket], batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, Any]]:
    """A batch from one bucket, chosen in proportion to its size; within it, examples drawn without repeats
    while there are enough."""
    sizes = torch.tensor([len(b.latents) for b in buckets], dtype=torch.float)
    bucket = buckets[int(torch.multinomial(sizes, 1, generator=generator))]
    count = len(bucket.latents)
    order = torch.randperm(count, generator=generator).tolist()
    picks = [order[i % count] for i in range(batch_size)]
    latents = torch.stack([bucket.latents[i] for i in picks])
    stacked = {k: torch.stack([bucket.conditioning[i][k] for i in picks]) for k in bucket.conditioning[0]}
    conditioning: dict[str, Any] = {"encoder_hidden_states": stacked.pop("encoder_hidden_states")}
    if stacked:
        conditioning["added_cond_kwargs"] = stacked
    return latents, conditioning


def _save_lora(pipeline: Any, output: Path) -> None:
    """Write the UNet's LoRA in the diffusers layout with the pipeline class's own writer, atomically."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipeline.unet))
    layers = {k: v.detach().float().cpu().contiguous() for k, v in layers.items()}
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lora-", dir=output.parent) as staging:
        type(pipeline).save_lora_weights(staging, unet_lora_layers=layers, weight_name=output.name)
        os.replace(Path(staging) / output.name, output)


def _atomic_save(write: Callable[[Path], None], target: Path) -> None:
    """Write through a temporary file beside `target`, then rename: a crash leaves the old file or the new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(handle)
    try:
        write(Path(name))
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


@torch.inference_mode()
def _samples(pipeline: Any, trigger: str, config: TrainingConfig) -> list[Image.Image]:
    """Images of the trigger word made with the trained LoRA, at the training resolution."""
    generator = torch.Generator().manual_seed(config.seed)
    size = config.resolution
    return pipeline(
        prompt=trigger,
        num_inference_steps=config.sample_steps,
        num_images_per_prompt=config.sample_count,
        width=size,
        height=size,
        generator=generator,
        output_type="pil",
    ).images
