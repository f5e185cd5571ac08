"""Input limits a worker survives (issue 11, item 4): images of extreme proportions or exotic formats, hostile
zips and prompts with control characters are refused up front with one line naming the limit, and nothing is
queued, written or stored."""

from __future__ import annotations

import asyncio
import io
import struct
import zipfile
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import redis
from PIL import Image

from bots.commands import CommandError, parse_lora, parse_prompt
from engine.registry import Registry
from jobs.datasets import DatasetError, extract_zip
from jobs.inputs import MAX_INPUT_ASPECT, MAX_INPUT_SIDE, InputImageError, read_image
from jobs.specs import Imagine, imagine_spec, vary_spec
from tests.support import redis_url, run_atelier, service_env

REDIS_URL = redis_url(13)
QUEUE = "atelier:test-security-inputs"
FORMATS = "PNG, JPEG, WebP, GIF, BMP or TIFF"


def _encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format)
    return buffer.getvalue()


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atelier: error:"), result.stderr
    assert result.stdout == ""
    return lines[0]


# Images ----------------------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services_env(postgres_databases, models_dir: Path, tmp_path_factory) -> dict[str, str]:
    """The CLI's environment on real Redis and PostgreSQL (no worker: nothing should reach one)."""
    root = tmp_path_factory.mktemp("security-inputs")
    database_url = await postgres_databases("atelier_test_security_inputs")
    return service_env(
        root, models_dir=models_dir, redis_url=REDIS_URL, database_url=database_url, queue_name=QUEUE
    )


async def _jobs_in(database_url: str) -> int:
    connection = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1), timeout=10)
    try:
        if await connection.fetchval("SELECT to_regclass('jobs')") is None:
            return 0  # the CLI never got as far as creating the schema
        return await connection.fetchval("SELECT count(*) FROM jobs")
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "command",
    [
        ["vary", "wide.png", "--prompt", "x"],
        ["inpaint", "wide.png", "--mode", "removal", "--mask", "wide.png"],
    ],
)
def test_a_16_000_000_by_1_png_exits_2_naming_the_limit_and_queues_nothing(
    services_env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    wide = _encoded(Image.new("L", (16_000_000, 1), 128), "PNG")
    assert len(wide) < 64 * 1024  # small compressed: the byte limit alone does not stop it
    (tmp_path / "wide.png").write_bytes(wide)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        line = _one_line_error(run_atelier(*command, cwd=tmp_path, env=services_env))
        assert "wide.png is 16000000x1: the longest side may be at most 8192 pixels" in line
        assert client.dbsize() == 0  # no job, no reservation, no queue entry
    finally:
        client.close()
    assert asyncio.run(_jobs_in(services_env["ATELIER_DATABASE_URL"])) == 0
    assert not Path(services_env["ATELIER_BLOB_URL"]).exists()  # no input stored


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (
            (MAX_INPUT_SIDE + 1, 1024),
            f"is 8193x1024: the longest side may be at most {MAX_INPUT_SIDE} pixels",
        ),
        ((1024, 9000), "is 1024x9000: the longest side may be at most"),
        (
            (MAX_INPUT_ASPECT * 64 + 1, 64),
            f"is 1025x64: its sides may differ by at most 1:{MAX_INPUT_ASPECT}",
        ),
        ((20, 20 * MAX_INPUT_ASPECT + 1), "its sides may differ by at most 1:16"),
    ],
)
def test_sides_and_aspect_ratio_are_checked_from_the_header(size: tuple[int, int], message: str) -> None:
    with pytest.raises(InputImageError) as error:
        read_image(_encoded(Image.new("1", size), "PNG"), name="in.png")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_limits_themselves_are_accepted() -> None:
    assert read_image(_encoded(Image.new("L", (MAX_INPUT_SIDE, 512)), "PNG")).size == (MAX_INPUT_SIDE, 512)
    assert read_image(_encoded(Image.new("L", (64, 64 * MAX_INPUT_ASPECT)), "PNG")).size == (64, 1024)


@pytest.mark.parametrize("format", ["PCX", "XBM"])
def test_a_pcx_or_xbm_input_is_refused_naming_the_accepted_formats(format: str, tmp_path: Path) -> None:
    path = tmp_path / f"input.{format.lower()}"
    path.write_bytes(_encoded(Image.new("1", (64, 64)), format))
    assert Image.open(path).format == format  # Pillow itself reads it
    line = _one_line_error(run_atelier("upscale", str(path), cwd=tmp_path, env={"ATELIER_TINY_MODELS": "1"}))
    assert f"input.{format.lower()} is not an image Atelier can read: send a {FORMATS} file" in line
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("format", ["SGI", "TGA", "PPM", "ICO"])
def test_other_pillow_formats_are_refused_too(format: str) -> None:
    with pytest.raises(InputImageError, match=f"send a {FORMATS} file"):
        read_image(_encoded(Image.new("RGB", (32, 32)), format), name="x")


@pytest.mark.parametrize("format", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_the_accepted_formats_decode(format: str) -> None:
    assert read_image(_encoded(Image.new("RGB", (48, 32), (10, 200, 30)), format)).size == (48, 32)


# Zips ------------------------------------------------------------------------------------------------------------


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _declare(data: bytes, compressed: int, uncompressed: int) -> bytes:
    """`data` with every central directory record claiming these sizes (the local headers and data unchanged)."""
    patched = bytearray(data)
    start = struct.unpack("<I", data[-6:-2])[0]  # the end record's offset of the central directory
    while patched[start : start + 4] == b"PK\x01\x02":
        patched[start + 20 : start + 28] = struct.pack("<II", compressed, uncompressed)
        name, extra, comment = struct.unpack("<HHH", patched[start + 28 : start + 34])
        start += 46 + name + extra + comment
    return bytes(patched)


def _refused_before_writing(data: bytes, folder: Path) -> str:
    with pytest.raises(DatasetError) as error:
        extract_zip(data, folder)
    assert not list(folder.iterdir())  # checked from the central directory: not one member written
    message = str(error.value)
    assert "\n" not in message and len(message) < 300
    return message


def test_a_zip_of_60000_members_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = _zip({f"{i}.txt": b"" for i in range(60_000)}, zipfile.ZIP_STORED)
    message = _refused_before_writing(data, tmp_path / "job")
    assert message.startswith("the zip holds 60000 entries; the limit is 1000")


def test_a_member_declaring_a_huge_size_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = _declare(_zip({"a.png": b"x" * 100}, zipfile.ZIP_STORED), 3 * 2**30, 3 * 2**30)
    assert (
        _refused_before_writing(data, tmp_path / "one")
        == "'a.png' expands to 3072.0 MiB; the limit is 20 MiB a file"
    )
    # Each member under the per-file limit, together past the total one (and no more compressed than stored).
    many = _declare(_zip({f"{i}.png": b"x" for i in range(30)}, zipfile.ZIP_STORED), 19 * 2**20, 19 * 2**20)
    assert _refused_before_writing(many, tmp_path / "total") == (
        "the zip expands to 570.0 MiB; the limit is 500 MiB"
    )


def test_a_300_character_member_name_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    name = "a" * 296 + ".png"
    data = _zip({"ok.png": b"x", f"photos/{name}": b"x"})
    message = _refused_before_writing(data, tmp_path / "job")
    assert "has a file name of 300 characters; the limit is 120" in message
    assert name not in message  # shortened for the message


def test_a_zip_bomb_is_refused_by_its_ratio_before_anything_is_written(tmp_path: Path) -> None:
    data = _zip({"ok.png": b"x", "bomb.png": b"\0" * (10 * 2**20)})  # under the 20 MiB a file, 1000 to 1
    assert len(data) < 32 * 1024
    message = _refused_before_writing(data, tmp_path / "job")
    assert (
        message.startswith("'bomb.png' expands 1")
        and "the limit is 100 times (it looks like a zip bomb)" in message
    )


def test_a_member_name_with_a_control_character_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    message = _refused_before_writing(_zip({"ok.png": b"x", "two\nlines.png": b"x"}), tmp_path / "job")
    assert (
        message
        == "the zip member 'two\\nlines.png' has a control character (U+000A at character 4) in its name: rename it"
    )


# Prompts and names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "described"),
    [("a fox\x00 in snow", "U+0000 at character 6"), ("a fox \x1b[2J --ar 1:1", "U+001B at character 7")],
)
def test_a_prompt_with_nul_or_an_escape_is_refused_by_the_shared_parser(text: str, described: str) -> None:
    with pytest.raises(CommandError) as error:
        parse_prompt(text)
    assert str(error.value) == f"the prompt holds a control character ({described}): remove it"


def test_newlines_and_tabs_in_a_prompt_are_kept_as_whitespace() -> None:
    assert parse_prompt("a fox\n\tin snow --ar 1:1").prompt == "a fox in snow"


def test_specs_refuse_nul_whichever_way_they_are_built(tmp_path: Path) -> None:
    registry = Registry.load()
    with pytest.raises(ValueError, match=r"the prompt holds a control character \(U\+0000"):
        imagine_spec(registry, prompt="a fox\x00", tiny=True)
    with pytest.raises(ValueError, match=r"the negative prompt holds a control character \(U\+0000"):
        imagine_spec(registry, prompt="a fox", negative="blur\x00", tiny=True)
    with pytest.raises(ValueError, match=r"the prompt holds a control character \(U\+0007"):
        vary_spec(
            registry, image_key="inputs/x.png", image=Image.new("RGB", (64, 64)), prompt="\x07", tiny=True
        )
    spec = imagine_spec(registry, prompt="a fox", tiny=True).model_dump()
    with pytest.raises(ValueError, match="control character"):  # a spec built by hand, or read back
        Imagine.model_validate({**spec, "prompt": "a fox\x00"})
    with pytest.raises(CommandError, match=r"the LoRA name holds a control character \(U\+0000"):
        parse_lora("style\x00:0.8")


def test_the_cli_refuses_a_prompt_with_an_escape_before_touching_anything(tmp_path: Path) -> None:
    # argv cannot carry a NUL; an escape sequence stands for every other control character.
    result = run_atelier("imagine", "a fox \x1b[2J", cwd=tmp_path, env={"ATELIER_TINY_MODELS": "1"})
    assert "the prompt holds a control character (U+001B at character 7): remove it" in _one_line_error(
        result
    )
    assert not (tmp_path / "data").exists()
