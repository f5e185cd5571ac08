"""Seeded determinism: the same preset and request give byte-identical PNGs in another process, even one that
builds its own copy of the tiny models."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.engine import Engine, TextToImage
from engine.output import png_bytes
from engine.registry import Registry

TINY_PRESETS = ["tiny", "tiny-sdxl", "tiny-flux"]

SCRIPT = """
import hashlib, json, sys
from pathlib import Path
from engine.engine import Engine, TextToImage
from engine.output import png_bytes
from engine.registry import Registry

registry = Registry.load()
engine = Engine(registry, Path(sys.argv[1]), device="cpu")
digests = {}
for name in json.loads(sys.argv[2]):
    preset = registry.get(name)
    images = engine.txt2img(preset, TextToImage.for_preset(preset, "a red fox", width=64, height=96, seed=7, count=2))
    digests[name] = [hashlib.sha256(png_bytes(image)).hexdigest() for image in images]
print(json.dumps(digests))
"""


@pytest.mark.slow  # the child process spends ~10 s importing torch and diffusers on a 2-core CPU
def test_same_request_gives_identical_bytes_in_another_process(
    engine: Engine, registry: Registry, tmp_path: Path
) -> None:
    here = {}
    for name in TINY_PRESETS:
        preset = registry.get(name)
        images = engine.txt2img(
            preset, TextToImage.for_preset(preset, "a red fox", width=64, height=96, seed=7, count=2)
        )
        here[name] = [hashlib.sha256(png_bytes(image)).hexdigest() for image in images]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "own-cache"), json.dumps(TINY_PRESETS)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    there = json.loads(result.stdout.strip().splitlines()[-1])
    assert there == here
    assert len({digest for digests in here.values() for digest in digests}) == 2 * len(TINY_PRESETS)
