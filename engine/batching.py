"""Several text-to-image requests in one pipeline call, each image as it would be alone.

Requests may share a call when their `batch_key`s are equal: same preset, size, steps, guidance, LoRAs and
hires fix (the same first-pass size, or none), and all with or all without a negative prompt (SDXL encodes an
absent negative prompt as zeros but an empty one as text, so mixing them would change images). With the hires
fix, the batch's first pass runs at the first size and its second pass (`engine.hires`) as one call too. Every image keeps its own generator seeded `seed + i`; a batched
image differs from the lone one only by the rounding of batched matrix products.

A member whose progress callback raises (that is how a job is cancelled) is dropped: what it raised becomes its
result, no further callback reaches it, and the others finish. A pipeline cannot shrink its batch mid-run, so
its images are still computed and then discarded; when every member has raised, the call stops at once.

Pre-emption (the relax lane, jobs.relax): a member whose callback raises `engine.generate.Preempted` gets the
latents of its images after that step attached to it. A request with `resume` set goes on from them: its call
runs only the remaining timesteps (`resumed_at`), starting from those latents instead of fresh noise, with the
scheduler's step index begun there. That gives the image an uninterrupted run gives where the scheduler keeps no
state between steps but its step index (`RESUMABLE_SCHEDULERS`: DDIM with eta 0, Euler without churn, flow-match
Euler: the tiny SD 1.5, SDXL and Flux presets' schedulers, pixel-equal in tests/engine/test_engine_resume.py;
Euler's latents go through one division by its initial sigma, which the pipeline multiplies back, so a real
model may differ by a rounding). Multistep schedulers (PNDM, DPM-Solver++, UniPC) keep a history of model outputs
that is not saved: `resumable` is False for them, and the relax lane runs such jobs to their end once started.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import diffusers
import torch
from PIL import Image

from engine.generate import Preempted, ProgressFn, TextToImage
from engine.hires import FLUX_MAX_SEQUENCE_LENGTH, refine
from engine.preview import first_preview
from engine.registry import Preset

ACTIVATION_BYTES_PER_PIXEL = 2560
"""Peak denoising memory per image and image pixel at 16-bit (2.5 GiB for a 1024x1024 SDXL image with
classifier-free guidance), deliberately on the high side; `bench/gpu_throughput.py` prints measured peaks."""

DECODE_BYTES_PER_PIXEL = 3072
"""Memory of decoding one image with the VAE at 16-bit; batches are decoded one image at a time (VAE slicing)."""

MemberResult = list[Image.Image] | BaseException


def batch_key(preset: Preset, request: TextToImage) -> Hashable:
    """Requests with equal keys can run in one pipeline call."""
    return (
        preset.name,
        request.width,
        request.height,
        request.steps,
        request.guidance,
        request.loras,
        bool(request.negative),
        request.tile,
        request.hires,
        request.resume,  # compared by identity: a resumed request runs alone
    )


def images_that_fit(width: int, height: int, *, free_bytes: int, dtype: torch.dtype) -> int:
    """How many images of this size one call may generate in `free_bytes` of device memory (at least one)."""
    scale = max(dtype.itemsize, 2) / 2
    pixels = width * height
    spare = free_bytes - DECODE_BYTES_PER_PIXEL * pixels * scale
    return max(1, int(spare // (ACTIVATION_BYTES_PER_PIXEL * pixels * scale)))


def free_memory(device: torch.device) -> int:
    """Bytes a new allocation can use: free device memory plus what torch's allocator holds unused; on the CPU,
    the host's available memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def generate(
    pipeline: diffusers.DiffusionPipeline,
    preset: Preset,
    requests: Sequence[TextToImage],
    progress: Sequence[ProgressFn | None],
    *,
    preview_every: int = 1,
) -> list[MemberResult]:
    """Run `requests` (equal `batch_key`s, already checked) as one call on `pipeline`, LoRAs already applied.

    Returns, per request, its images or what its progress callback raised. A lone request runs exactly as it
    always has: its prompt encoded once for all of its images.
    """
    if len({batch_key(preset, request) for request in requests}) != 1:
        raise ValueError("a batch needs requests with the same model, size, steps, guidance and LoRAs")
    first = requests[0]
    if len(requests) == 1:
        prompt: str | list[str] = first.prompt
        per_prompt = first.count
        negative: str | list[str] | None = first.negative or None
    else:
        prompt = [request.prompt for request in requests for _ in range(request.count)]
        per_prompt = 1
        negative = [r.negative for r in requests for _ in range(r.count)] if first.negative else None
    generators = [
        torch.Generator("cpu").manual_seed(request.seed + index)
        for request in requests
        for index in range(request.count)
    ]
    size = (first.width, first.height) if first.hires is None else (first.hires.width, first.hires.height)
    done = 0 if first.resume is None else first.resume.step
    reporter = _StepReporter(preset, requests, progress, preview_every, size, first_step=done)
    resuming: dict[str, Any] = {}
    if first.resume is not None:
        resuming["latents"] = first.resume.latents.to(pipeline.device, copy=True)
    try:
        with resumed_at(pipeline, done, resuming):
            result = pipeline(
                prompt=prompt,
                width=size[0],
                height=size[1],
                num_inference_steps=first.steps,
                guidance_scale=first.guidance,
                num_images_per_prompt=per_prompt,
                generator=generators,
                callback_on_step_end=reporter if any(p is not None for p in progress) else None,
                output_type="pil",
                **resuming,
                **_family_arguments(preset, negative),
            )
    except _EveryMemberStopped:
        return list(reporter.errors)  # type: ignore[arg-type]  # every entry is set
    images = list(result.images)
    if first.hires is not None:
        images = _second_pass(pipeline, preset, requests, progress, preview_every, reporter.errors, images)
    results: list[MemberResult] = []
    for request, offset, error in zip(requests, reporter.offsets, reporter.errors, strict=True):
        results.append(error if error is not None else images[offset : offset + request.count])
    return results


def _second_pass(
    pipeline: diffusers.DiffusionPipeline,
    preset: Preset,
    requests: Sequence[TextToImage],
    progress: Sequence[ProgressFn | None],
    preview_every: int,
    errors: list[BaseException | None],
    images: list[Image.Image],
) -> list[Image.Image]:
    """The hires fix's second pass over the first pass's `images`, as one call for the members still wanted;
    a member's progress (and what it raises) goes on from the first pass. Returns every member's images in
    the same places (a dropped member's are left as they were: they are never given out)."""
    first = requests[0]
    assert first.hires is not None
    live = [member for member, error in enumerate(errors) if error is None]
    offsets = [sum(r.count for r in requests[:member]) for member in range(len(requests))]
    chosen = [offsets[m] + index for m in live for index in range(requests[m].count)]
    reporter = _StepReporter(
        preset,
        [requests[m] for m in live],
        [progress[m] for m in live],
        preview_every,
        (first.width, first.height),
    )
    try:
        refined = refine(
            pipeline,
            preset,
            [images[i] for i in chosen],
            size=(first.width, first.height),
            strength=first.hires.strength,
            prompts=[requests[m].prompt for m in live for _ in range(requests[m].count)],
            negatives=[requests[m].negative for m in live for _ in range(requests[m].count)]
            if first.negative
            else None,
            seeds=[requests[m].seed + index for m in live for index in range(requests[m].count)],
            steps=first.steps,
            guidance=first.guidance,
            callback=reporter if any(progress[m] is not None for m in live) else None,
        )
    except _EveryMemberStopped:
        refined = []
    for member, error in zip(live, reporter.errors, strict=True):
        errors[member] = error
    if not refined:
        return images
    images = list(images)
    for place, image in zip(chosen, refined, strict=True):
        images[place] = image
    return images


RESUMABLE_SCHEDULERS = frozenset(
    {"DDIMScheduler", "EulerDiscreteScheduler", "FlowMatchEulerDiscreteScheduler"}
)
"""Schedulers whose step depends only on the timestep, the step index and the latents (see the module's doc)."""


def resumable(pipeline: diffusers.DiffusionPipeline, preset: Preset) -> bool:
    """Whether a generation on `pipeline` can stop between steps and go on later from its latents, exactly."""
    return type(pipeline.scheduler).__name__ in RESUMABLE_SCHEDULERS


@contextlib.contextmanager
def resumed_at(pipeline: diffusers.DiffusionPipeline, done: int, arguments: dict[str, Any]) -> Iterator[None]:
    """Within it, `pipeline`'s scheduler skips the first `done` steps of its timesteps, beginning its step
    index there; the latents in `arguments` (if any) are divided by the initial noise sigma the pipeline will
    multiply them by. Nothing changes when `done` is 0."""
    if done == 0:
        yield
        return
    scheduler = pipeline.scheduler
    if type(scheduler).__name__ not in RESUMABLE_SCHEDULERS:
        raise ValueError(f"a generation with {type(scheduler).__name__} cannot resume between steps")
    skip = done * scheduler.order
    real_set_timesteps = scheduler.set_timesteps
    real_set_begin_index = getattr(scheduler, "set_begin_index", None)  # DDIM has none: it keeps no index
    patched = {}

    @functools.wraps(real_set_timesteps)  # the pipeline reads its signature (custom sigmas or timesteps)
    def set_timesteps(*args: Any, **kwargs: Any) -> None:
        real_set_timesteps(*args, **kwargs)
        scheduler.timesteps = scheduler.timesteps[skip:]
        if real_set_begin_index is not None:
            real_set_begin_index(skip)
        sigma = getattr(
            scheduler, "init_noise_sigma", 1
        )  # flow matching has none: the pipeline scales nothing
        if "latents" in arguments and not (isinstance(sigma, int | float) and sigma == 1):
            arguments["latents"].div_(sigma)  # in place: the pipeline holds this tensor already

    patched["set_timesteps"] = set_timesteps
    if real_set_begin_index is not None:

        @functools.wraps(real_set_begin_index)  # SDXL and Flux set the begin index to 0 after the timesteps
        def set_begin_index(begin_index: int = 0) -> None:
            real_set_begin_index(skip + begin_index)

        patched["set_begin_index"] = set_begin_index
    for name, method in patched.items():
        setattr(scheduler, name, method)
    try:
        yield
    finally:
        for name in patched:
            delattr(scheduler, name)  # the class's own methods again


def _family_arguments(preset: Preset, negative: str | list[str] | None) -> dict[str, Any]:
    if preset.family == "flux":
        return {"max_sequence_length": FLUX_MAX_SEQUENCE_LENGTH}
    return {"negative_prompt": negative}


class _EveryMemberStopped(Exception):
    """Raised from the step callback to end a call no member wants any more."""


class _StepReporter:
    """The `callback_on_step_end` that gives each member `progress(step, total, preview)` of its first image,
    `total` being the steps this call runs (fewer than asked in a hires fix's second pass) and the preview
    drawn at `size`, the size this call generates."""

    def __init__(
        self,
        preset: Preset,
        requests: Sequence[TextToImage],
        progress: Sequence[ProgressFn | None],
        preview_every: int,
        size: tuple[int, int],
        *,
        first_step: int = 0,
    ) -> None:
        self.first_step = first_step  # steps a resumed request had run before this call
        self.preset = preset
        self.requests = requests
        self.progress = progress
        self.preview_every = preview_every
        self.size = size
        self.offsets = [sum(r.count for r in requests[:index]) for index in range(len(requests))]
        self.errors: list[BaseException | None] = [None] * len(requests)

    def __call__(
        self, pipeline: diffusers.DiffusionPipeline, index: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        step, total = self.first_step + index + 1, self.first_step + pipeline.num_timesteps
        due = bool(self.preview_every) and (step % self.preview_every == 0 or step == total)
        for member, report in enumerate(self.progress):
            if report is None or self.errors[member] is not None:
                continue
            preview = None
            if due:
                offset = self.offsets[member]
                preview = first_preview(
                    self.preset.family,
                    tensors["latents"][offset : offset + 1],
                    height=self.size[1],
                    width=self.size[0],
                    vae_scale_factor=pipeline.vae_scale_factor,
                )
            try:
                report(step, total, preview)
            except Preempted as error:  # to go on later from these latents (see the module's docstring)
                offset, count = self.offsets[member], self.requests[member].count
                error.latents = tensors["latents"][offset : offset + count].detach().to("cpu", copy=True)
                self.errors[member] = error
            except BaseException as error:  # a cancel may be any exception, even CancelledError
                self.errors[member] = error
        if all(error is not None for error in self.errors):
            raise _EveryMemberStopped
        return {}
