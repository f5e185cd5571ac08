"""The clients the Slack app's listeners use, built once by the composition root and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from arq.connections import ArqRedis

from engine.registry import Registry
from quotas.admin import Admin
from quotas.tiers import Tiers
from storage.blobs import BlobStore


@dataclass(frozen=True)
class SlackServices:
    redis: ArqRedis  # the arq queue, event dedupe keys, cancel signals and job event streams
    registry: Registry  # model presets, to validate requests before anything is enqueued
    queue_name: str
    blobs: BlobStore  # result images (what U/V/Faces act on) and the input images people send
    tiny_models: bool = False  # make every default model its tiny counterpart (tests, offline demo)
    tiers: Tiers = field(default_factory=Tiers)  # the configured tiers (admission and `/atelier tier`)
    loras_dir: Path | None = None  # the shared LoRA folder; what --lora takes, with trained ones
    train_queue_name: str | None = None  # the LoRA training queue; None: `/atelier lora train` is unavailable
    admin: Admin = field(init=False)  # the quotas admin API: cancelling jobs and the `/atelier` commands

    def __post_init__(self) -> None:
        admin = Admin(self.redis, self.queue_name, self.tiers, train_queue_name=self.train_queue_name)
        object.__setattr__(self, "admin", admin)
