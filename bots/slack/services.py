"""The clients the Slack app's listeners use, built once by the composition root and passed in."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis

from engine.registry import Registry


@dataclass(frozen=True)
class SlackServices:
    redis: ArqRedis  # the arq queue, event dedupe keys and job event streams
    registry: Registry  # model presets, to validate requests before anything is enqueued
    queue_name: str
    tiny_models: bool = False  # make every default model its tiny counterpart (tests, offline demo)
