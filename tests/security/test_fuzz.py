"""Fuzzing the real parsers and validators (issue 11, item 7): generated commands (prompts, flags, typed option
values, custom ids, modal values, Slack payloads) and generated or mutated images and zips.

Every case must end in a valid value (a spec that pydantic accepts again and that fits the registry's limits, an
id naming a known action, an RGB image within the input limits, a dataset folder of what was declared) or in a
refusal of the project's own: a ValueError subclass whose message is one line naming the problem
(`fuzzing.check_refusal`). Anything else is a crash. Building the spec is the gate before anything is enqueued,
so an invalid command that fails there enqueues nothing (every command test runs the builder the bot runs
before it submits or defers).

Sizes: `ATELIER_FUZZ_COUNT` (see `fuzzing`); `ATELIER_FUZZ_COUNT=full pytest tests/security/test_fuzz.py -s`
runs the issue's count and prints the tally.
"""

from __future__ import annotations

import io
import json
import shlex
import string
import struct
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from bots.commands import FLAGS, CommandError, parse_lora
from bots.discord import imagine as discord_imagine
from bots.discord import inpaint as discord_inpaint
from bots.discord.cancel import CancelButton
from bots.discord.components import RESULT_ACTIONS, cancel_id, result_id
from bots.discord.results import ResultButton
from bots.slack import files as slack_files
from bots.slack import ids as slack_ids
from bots.slack.imagine import imagine_from_text
from bots.slack.inpaint import field_errors, inpaint_modal
from bots.slack.inpaint_command import parse_inpaint
from engine.lora import MAX_LORAS, LoraLibrary, TenantLoras
from engine.registry import Registry
from jobs.datasets import unpack_dataset
from jobs.inputs import MAX_INPUT_ASPECT, MAX_INPUT_PIXELS, MAX_INPUT_SIDE, read_image
from jobs.specs import MAX_PROMPT_CHARS, MAX_SEED, Imagine, imagine_spec, parse_extend, parse_size
from jobs.text import PROMPT_WHITESPACE, control_character
from quotas.admin_args import ChatArgumentError, check, parse_chat
from quotas.tiers import Tiers
from tests.security.fuzzing import COMMANDS, FILES, Tally, check_refusal, fuzz_settings

# zipfile warns of the duplicate names and Pillow of the damaged files this suite makes on purpose
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

REGISTRY = Registry.load()
TIERS = Tiers.load(None)
TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def print_tally():
    yield
    print(f"\nfuzz: {COMMANDS} commands per category, {FILES} files per category\n{TALLY.summary()}")


@pytest.fixture(scope="module")
def lora_library(tmp_path_factory) -> TenantLoras:
    """A tenant with one trained LoRA (`ink`) over an installation folder with one shared LoRA (`style`)."""
    folder = tmp_path_factory.mktemp("loras")
    (folder / "style.safetensors").write_bytes(b"")
    return TenantLoras(LoraLibrary(folder), {"ink": 12})


# Strategies: text ------------------------------------------------------------------------------------------------

ANY_CHAR = st.characters(blacklist_categories=())  # control characters, NUL and lone surrogates included
WORDS = st.sampled_from(
    ["a", "cat", "lighthouse at dawn", "🐱", "naïve", "日本", "x" * 50, '"', "'", "\\", "-"]
)
ODD = st.sampled_from(
    ["\x00", "\x1b[31m", "\r", "\n", "\t", "\ud800", "\u2028", "\u200b", "\ufeff", "\u202e", "—", "–", "\x7f"]
)
SHORT_TEXT = st.text(ANY_CHAR, max_size=20)
LONG_TEXT = st.builds(
    lambda piece, times: piece * times, st.text(ANY_CHAR, min_size=1, max_size=4), st.integers(1, 3000)
)
TEXT = st.one_of(SHORT_TEXT, WORDS, ODD, LONG_TEXT)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(
        [
            "0",
            "-1",
            "1",
            "4",
            "7",
            "30",
            "75",
            "151",
            str(MAX_SEED),
            str(MAX_SEED + 1),
            "1e3",
            "1_000",
            "0x10",
            "²",
            "١٢",
            "𝟗",
            "nan",
            "inf",
            "-inf",
            "1.5",
            "9" * 5000,
            "+7",
            " 7 ",
            "",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
ASPECTS = st.one_of(
    st.sampled_from(
        [
            "16:9",
            "1:1",
            "4:1",
            "1:4",
            "5:1",
            "0:1",
            "1:0",
            "-1:1",
            "nan:1",
            "inf:1",
            "1e308:1e-308",
            "1:1:1",
            ":",
            "16/9",
            "²:1",
            "1e-320:1",
        ]
    ),
    st.builds(lambda a, b: f"{a}:{b}", NUMBERS, NUMBERS),
)
SIZES = st.one_of(
    st.sampled_from(
        [
            "768x512",
            "64x64",
            "0x0",
            "8x8",
            "1024X1024",
            "4096x4096",
            "²x²",
            "١٢x١٢",
            "x",
            "512x",
            "9" * 5000 + "x8",
            "512x512x512",
            " 512 x 512 ",
        ]
    ),
    st.builds(lambda a, b: f"{a}x{b}", NUMBERS, NUMBERS),
)
MODELS = st.one_of(st.sampled_from([*REGISTRY.names(), "SD15", "../sd15", "sd15 ", ""]), SHORT_TEXT)
LORAS = st.one_of(
    st.sampled_from(
        [
            "style",
            "ink",
            "style:0.8",
            "ink:-2",
            "ink:2.01",
            "style:nan",
            "style:inf",
            ":0.5",
            "ink:",
            "ink:0.5:1",
            "ink@12",
            "../ink",
            "style:1e400",
            "a" * 65,
            "a\x00b:1",
        ]
    ),
    st.builds(lambda name, weight: f"{name}:{weight}", SHORT_TEXT, NUMBERS),
    SHORT_TEXT,
)
FLAG_WORDS = st.one_of(
    st.sampled_from([*FLAGS, "--AR", "--Seed", "--", "---", "--foo", "--no-", "-ar", "--lora=ink"]),
    st.builds(lambda name: f"--{name}", SHORT_TEXT),
)
FLAG_VALUES = {
    "--ar": ASPECTS,
    "--aspect": ASPECTS,
    "--size": SIZES,
    "--seed": NUMBERS,
    "--steps": NUMBERS,
    "--count": NUMBERS,
    "--n": NUMBERS,
    "--model": MODELS,
    "--guidance": NUMBERS,
    "--cfg": NUMBERS,
    "--no": TEXT,
    "--lora": LORAS,
}


@st.composite
def flag_pairs(draw) -> list[str]:
    """A flag with a value that fits its kind more often than not, sometimes none or several."""
    flag = draw(FLAG_WORDS)
    values = FLAG_VALUES.get(flag.lower(), TEXT)
    return [flag, *draw(st.lists(st.one_of(values, values, TEXT), max_size=2))]


@st.composite
def prompts(draw) -> str:
    """Words and flags, quoted the way a person might (or unbalanced), sometimes one huge or hostile string."""
    if draw(st.integers(0, 9)) == 0:
        return draw(TEXT)
    pieces: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            pieces.append(draw(st.one_of(WORDS, SHORT_TEXT, ODD)))
        else:
            pair = draw(flag_pairs())
            pieces.extend(shlex.quote(p) if draw(st.booleans()) else p for p in pair)
    return " ".join(pieces)


# Checks of accepted values ---------------------------------------------------------------------------------------


def check_imagine(spec: Imagine) -> None:
    """A spec that pydantic accepts again and that respects its preset's limits and the text rules."""
    again = Imagine.model_validate(json.loads(spec.model_dump_json()))
    assert again == spec
    preset = REGISTRY.get(spec.model)
    preset.check(
        width=spec.width,
        height=spec.height,
        steps=spec.steps,
        count=spec.count,
        guidance=spec.guidance,
        negative=spec.negative,
    )
    assert 0 <= spec.seed <= MAX_SEED
    assert (
        spec.prompt.strip()
        and len(spec.prompt) <= MAX_PROMPT_CHARS
        and len(spec.negative) <= MAX_PROMPT_CHARS
    )
    for text in (spec.prompt, spec.negative):
        assert control_character(text, allowed=PROMPT_WHITESPACE) is None
    assert len(spec.loras) <= MAX_LORAS
    assert all(-2 <= weight <= 2 for _, weight in spec.loras)


# Commands --------------------------------------------------------------------------------------------------------


@fuzz_settings(COMMANDS)
@given(text=prompts(), tiny=st.booleans(), with_loras=st.booleans())
def test_slack_imagine_text(text: str, tiny: bool, with_loras: bool, lora_library: TenantLoras) -> None:
    """`/imagine <text>` in Slack: the whole of what was typed through `imagine_from_text`, the gate before submit."""
    spec = TALLY.attempt(
        "prompts (Slack /imagine)",
        lambda: imagine_from_text(REGISTRY, text, tiny=tiny, loras=lora_library if with_loras else None),
        (CommandError,),
    )
    if spec is not None:
        check_imagine(spec)
        assert {name for name, _ in spec.loras} <= {"style", "ink@12"}


DISCORD_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "negative": st.one_of(st.none(), TEXT),
        "aspect": st.one_of(st.none(), ASPECTS, st.sampled_from(discord_imagine.ASPECTS)),
        "model": st.one_of(st.none(), MODELS),
        "seed": st.one_of(st.none(), st.integers(0, MAX_SEED)),  # Discord enforces the typed ranges
        "steps": st.one_of(st.none(), st.integers(1, 150)),
        "count": st.one_of(st.none(), st.integers(1, 10)),
        "lora": st.one_of(st.none(), LORAS),
    },
)


@fuzz_settings(COMMANDS)
@given(prompt=prompts(), options=DISCORD_OPTIONS, tiny=st.booleans())
def test_discord_imagine_options(prompt: str, options: dict, tiny: bool) -> None:
    """Discord's `/imagine`: typed options (the LoRA option through `parse_lora`, as the command does) merged
    with the prompt's flags through `build_spec`, the gate before the deferral."""
    bot = SimpleNamespace(config=SimpleNamespace(registry=REGISTRY, tiny_models=tiny))

    def build() -> tuple[Imagine, list]:
        typed = dict(options)
        lora = typed.pop("lora", None)
        typed["lora"] = [parse_lora(lora)] if lora else None
        return discord_imagine.build_spec(bot, prompt, typed)  # type: ignore[arg-type]

    built = TALLY.attempt("options (Discord /imagine)", build)
    if built is not None:
        spec, loras = built
        check_imagine(spec)
        assert len(loras) <= MAX_LORAS and all(-2 <= w <= 2 for _, w in loras)


@fuzz_settings(COMMANDS)
@given(
    mode=st.one_of(st.sampled_from(["insertion", "removal", "outpaint"]), SHORT_TEXT),
    prompt=prompts(),
    typed=st.fixed_dictionaries(
        {}, optional={"seed": st.integers(0, MAX_SEED), "steps": st.integers(1, 150), "model": MODELS}
    ),
    has_mask=st.booleans(),
    extend=st.one_of(
        st.none(), st.sampled_from(["left=256", "left=64,top=8", "left=1,left=2", "up=3"]), TEXT
    ),
    slack_text=st.one_of(
        prompts(),
        st.builds(
            lambda link, mode, rest: f"{link} {mode} {rest}",
            st.sampled_from(
                ["https://x.slack.com/files/U1/F123/a.png", "<https://x.slack.com/files/U1/F1/b|b>"]
            ),
            st.sampled_from(["insertion", "removal", "outpaint", "Removal"]),
            prompts(),
        ),
    ),
)
def test_inpaint_flags(mode, prompt, typed, has_mask, extend, slack_text) -> None:
    """`/inpaint` on both platforms: Discord's `check_request` (mode, prompt flags, typed options, extend) and
    Slack's `parse_inpaint` (link, mode, --mask, --extend and the prompt's flags)."""
    checked = TALLY.attempt(
        "flags (/inpaint)", lambda: discord_inpaint.check_request(mode, prompt, typed, has_mask, extend)
    )
    if checked is not None:
        words, options, extension = checked
        assert control_character(words, allowed=PROMPT_WHITESPACE) is None
        assert not {"aspect", "size", "lora"} & set(options)
        assert min(extension.left, extension.right, extension.top, extension.bottom) >= 0
    parsed = TALLY.attempt("flags (/inpaint)", lambda: parse_inpaint(slack_text), (CommandError,))
    if parsed is not None:
        _, slack_mode, own, _, options = parsed
        assert slack_mode in ("insertion", "removal", "outpaint")
        assert set(own) <= {"--mask", "--extend"}
        assert set(options) <= {"seed", "steps", "count", "guidance", "model", "negative"}


@fuzz_settings(COMMANDS)
@given(
    lora=LORAS,
    extend=st.one_of(
        TEXT,
        st.builds(
            lambda parts: ",".join(parts),
            st.lists(
                st.builds(lambda s, v: f"{s}={v}", st.sampled_from(["left", "RIGHT", "top", "x"]), NUMBERS)
            ),
        ),
    ),
    size=SIZES,
    aspect=ASPECTS,
    model=MODELS,
)
def test_option_values(lora: str, extend: str, size: str, aspect: str, model: str) -> None:
    """The option values on their own: LoRA `name:weight`, outpaint's extension, `WxH` sizes, `W:H` aspect ratios
    (through `imagine_spec`, which also checks them against the preset's limits)."""
    category = "option values"
    parsed = TALLY.attempt(category, lambda: parse_lora(lora), (CommandError,))
    if parsed is not None:
        name, weight = parsed
        assert name and control_character(name) is None and -2 <= weight <= 2
    extension = TALLY.attempt(category, lambda: parse_extend(extend))
    if extension is not None:
        assert min(extension.left, extension.right, extension.top, extension.bottom) >= 0
    dimensions = TALLY.attempt(category, lambda: parse_size(size))
    if dimensions is not None:
        assert all(isinstance(side, int) and side >= 0 for side in dimensions)
    for given_size, given_aspect in ((size, None), (None, aspect)):
        spec = TALLY.attempt(
            category,
            lambda size=given_size, aspect=given_aspect: imagine_spec(
                REGISTRY, prompt="a cat", model=model or None, size=size, aspect=aspect
            ),
        )
        if spec is not None:
            check_imagine(spec)


ADMIN_WORDS = st.one_of(
    st.sampled_from(
        [
            "tier",
            "quota",
            "usage",
            "pause",
            "resume",
            "ban",
            "unban",
            "safety",
            "emoji",
            "help",
            "-h",
            "--help",
            "priority",
            "free",
            "standard",
            "--images-per-day",
            "--concurrent-jobs",
            "--gpu-seconds-per-month",
            "--clear",
            "all",
            "images-per-day",
            "--timezone",
            "Europe/Paris",
            "../../etc/passwd",
            "UTC\x00",
            "--period",
            "2024-13",
            "today",
            "--reason",
            "<@U123|ana>",
            "<@!42>",
            "on",
            "off",
            "upscale",
            "faces",
            "--reset",
            "—images-per-day",
            "–clear",
            '"',
            "'",
            "\\",
        ]
    ),
    NUMBERS,
    SHORT_TEXT,
)


@fuzz_settings(COMMANDS)
@given(words=st.lists(ADMIN_WORDS, max_size=6), raw=st.booleans())
def test_admin_arguments(words: list[str], raw: bool) -> None:
    """`/atelier ACTION …` (both chats): `parse_chat` then `check`, everything done before the database. argparse's
    refusals carry the usage on the lines after the first by design (`ChatArgumentError`); `check`'s are one line."""
    text = " ".join(words) if raw else shlex.join(words)
    row = TALLY.row("admin arguments")
    row["cases"] += 1
    try:
        args = parse_chat("/atelier", text)
    except ChatArgumentError as exc:
        first, *usage = str(exc).split("\n")
        if not first.startswith("usage:"):  # the help (asked for, or nothing typed) is the usage itself
            check_refusal(ValueError(first))
            assert not usage or usage[0].startswith("usage:"), str(exc)
        row["refused"] += 1
        return
    except Exception:
        row["crashes"] += 1
        raise
    try:
        limits, clear = check(args, TIERS)
    except ValueError as exc:
        check_refusal(exc)
        row["refused"] += 1
        return
    except Exception:
        row["crashes"] += 1
        raise
    row["accepted"] += 1
    assert all(isinstance(v, int) and v >= 0 for v in limits.values())
    assert all(isinstance(name, str) for name in clear)


# Custom ids ------------------------------------------------------------------------------------------------------

DISCORD_IDS = st.one_of(
    st.builds(
        result_id,
        st.sampled_from(RESULT_ACTIONS),
        st.from_regex(r"j[0-9a-f]{1,16}", fullmatch=True),
        st.integers(0, 99),
    ),
    st.builds(cancel_id, st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)),
)
SLACK_IDS = st.builds(
    lambda action, job, index: slack_ids.ActionRef(action, job, index).encode(),
    st.sampled_from(slack_ids.ACTIONS),
    st.from_regex(r"j[0-9a-f]{1,16}", fullmatch=True),
    st.integers(0, 10**6),
)


@st.composite
def mutated(draw, valid) -> str:
    """A valid id with characters inserted, deleted or replaced (or a random string, or a huge one)."""
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(TEXT)
    text = draw(valid)
    for _ in range(draw(st.integers(0 if choice > 1 else 1, 4))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.one_of(ANY_CHAR, st.sampled_from([":", "\n", "0", "٣", "j", "-", "_"])))
        if how == "insert":
            text = text[:at] + char + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + char + text[at + 1 :]
    return text


def discord_parse(custom_id: str) -> tuple[str, str, int] | None:
    """What discord.py does with a clicked custom id: fullmatch each registered template, then build the item
    from the match (`from_custom_id`), as `ViewStore.dispatch_dynamic_items` does."""
    import asyncio

    import discord

    for item_class in (ResultButton, CancelButton):
        match = item_class.__discord_ui_compiled_template__.fullmatch(custom_id)
        if match is None:
            continue
        button = discord.ui.Button(custom_id=custom_id)
        item = asyncio.run(item_class.from_custom_id(None, button, match))  # type: ignore[arg-type]
        if isinstance(item, ResultButton):
            return item.action, item.job_id, item.index
        return "cancel", item.job_id, 0
    return None


@fuzz_settings(COMMANDS)
@given(
    discord_id=mutated(DISCORD_IDS).map(lambda text: text[:100]),  # Discord's limit for a custom id
    slack_id=mutated(SLACK_IDS).map(lambda text: text[:255]),  # Slack's limit for an action id
)
def test_custom_ids(discord_id: str, slack_id: str) -> None:
    """Button ids: a Discord custom id either matches no template (discord.py ignores the click) or names a known
    action, a job id of the id alphabet and an index of two digits; a Slack action id decodes to a known action
    and a `j<hex>` job id, or is refused with a ValueError."""
    category = "custom ids"
    parsed = TALLY.attempt(category, lambda: discord_parse(discord_id))
    if parsed is not None:
        action, job_id, index = parsed
        assert action in (*RESULT_ACTIONS, "cancel")
        assert (
            job_id and len(job_id) <= 64 and set(job_id) <= set(string.ascii_letters + string.digits + "_-")
        )
        assert 0 <= index <= 99
    ref = TALLY.attempt(category, lambda: slack_ids.decode(slack_id))
    if ref is not None:
        assert ref.action in slack_ids.ACTIONS
        assert ref.job_id[0] == "j" and set(ref.job_id[1:]) <= set("0123456789abcdef")
        assert ref.index >= 0


# Modal values and Slack payloads ---------------------------------------------------------------------------------

MAYBE = st.one_of(st.none(), st.integers(-(2**40), 2**40), st.floats(), TEXT, st.booleans())
FILES_IN_PAYLOAD = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.one_of(st.from_regex(r"F[A-Z0-9]{1,10}", fullmatch=True), MAYBE),
            "name": MAYBE,
            "title": MAYBE,
            "mimetype": st.one_of(
                st.sampled_from(["image/png", "image/jpeg", "application/zip", "image/"]), MAYBE
            ),
            "filetype": MAYBE,
            "size": st.one_of(st.integers(-1, 2**40), MAYBE),
            "mode": st.one_of(st.sampled_from(["hosted", "external", "tombstone"]), MAYBE),
        },
    ),
    max_size=4,
)


@st.composite
def inpaint_views(draw) -> dict:
    """A submitted Inpaint form: the modal as Atelier built it, with what a person typed or chose in its inputs
    (any mode value, prompt and extension text, mask files), inputs left out at random."""
    images = [{"id": "F1"}] + ([{"id": "F2"}] if draw(st.booleans()) else [])
    view = inpaint_modal(images, "C1", "1700000000.000100")
    values: dict = {}
    if draw(st.booleans()):
        # a static select: Slack sends one of the modal's own options (or none)
        chosen = draw(st.one_of(st.none(), st.sampled_from(["insertion", "removal", "outpaint"])))
        values["mode"] = {"mode": {"selected_option": None if chosen is None else {"value": chosen}}}
    for block in ("prompt", "extend"):
        if draw(st.booleans()):
            values[block] = {block: {"value": draw(st.one_of(st.none(), TEXT, prompts()))}}
    if draw(st.booleans()):
        values["mask"] = {"mask": {"files": draw(FILES_IN_PAYLOAD)}}
    return {**view, "id": "V1", "state": {"values": values}}


@fuzz_settings(COMMANDS)
@given(view=inpaint_views())
def test_modal_values(view: dict) -> None:
    """The Inpaint form's submission: `field_errors` answers every problem it can see before a download, per input,
    each one line; a form it passes has a known mode and an extension that parses."""
    row = TALLY.row("modal values (Slack Inpaint)")
    row["cases"] += 1
    try:
        errors = field_errors(view)
    except Exception:
        row["crashes"] += 1
        raise
    for message in errors.values():
        check_refusal(CommandError(message))
    row["refused" if errors else "accepted"] += 1
    assert set(errors) <= {"mask", "prompt", "extend"}


@fuzz_settings(COMMANDS)
@given(
    message=st.fixed_dictionaries({}, optional={"files": FILES_IN_PAYLOAD, "ts": MAYBE, "thread_ts": MAYBE}),
    link=st.one_of(
        TEXT,
        st.sampled_from(
            [
                "https://x.slack.com/files/U1/F0ABC/cat.png",
                "<https://x.slack.com/files-pri/T1-F0ABC/cat.png|cat>",
                "https://evil.example/files/U1/F0ABC/x",
                "<>",
                "|",
                "/files//F1",
            ]
        ),
    ),
)
def test_slack_payloads(message: dict, link: str) -> None:
    """Slack payload parts as the listeners read them: a message's files (`image_files`, `check_declared_size`,
    with fields missing or of the wrong type) and a file permalink (`file_id`)."""
    category = "Slack payloads"
    images = TALLY.attempt(category, lambda: slack_files.image_files(message), (CommandError,))
    if images is not None:
        assert images and all(slack_files.is_image(f) for f in images)
        for file in images:
            TALLY.attempt(category, lambda file=file: slack_files.check_declared_size(file), (CommandError,))
    file = TALLY.attempt(category, lambda: slack_files.file_id(link), (CommandError,))
    if file is not None:
        assert file.startswith("F") and file[1:].isalnum()


# Images ----------------------------------------------------------------------------------------------------------

IMAGE_FORMATS = {  # Pillow format: the modes it writes; the first six are the accepted ones
    "PNG": ("RGB", "RGBA", "L", "P", "I;16", "1"),
    "JPEG": ("RGB", "L", "CMYK"),
    "GIF": ("P", "L"),
    "BMP": ("RGB", "L", "P", "1"),
    "TIFF": ("RGB", "RGBA", "L", "CMYK", "I;16", "F"),
    "WEBP": ("RGB", "RGBA"),
    "PCX": ("RGB", "L", "P"),
    "XBM": ("1",),
    "SGI": ("RGB", "L"),
    "ICO": ("RGBA",),
    "PPM": ("RGB", "L"),
    "TGA": ("RGB", "L"),
}
SIZE_FIELDS = {"PNG": (16, ">I"), "BMP": (18, "<i"), "GIF": (6, "<H"), "PCX": (8, "<H"), "SGI": (6, ">H")}
"""Where each format keeps its width (height follows), to claim extreme sizes in a valid file's header."""


@st.composite
def images(draw) -> bytes:
    """Random bytes, or a small image made with Pillow in some format and mode, then perhaps truncated, with bits
    flipped, or with its header claiming another size (16,000,000 × 1, 0 × 0, 65535², …)."""
    if draw(st.integers(0, 7)) == 0:
        return draw(st.binary(max_size=2048))
    fmt = draw(st.sampled_from(sorted(IMAGE_FORMATS)))
    mode = draw(st.sampled_from(IMAGE_FORMATS[fmt]))
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    seed = draw(st.binary(min_size=1, max_size=16))
    picture = Image.frombytes("L", (width, height), (seed * (width * height))[: width * height])
    buffer = io.BytesIO()
    try:
        picture.convert(mode).save(buffer, fmt)
    except (OSError, ValueError, KeyError):
        picture.convert("RGB").save(buffer, "PNG")
        fmt = "PNG"
    data = bytearray(buffer.getvalue())
    mutation = draw(st.sampled_from(["none", "truncate", "flip", "size", "size", "tail"]))
    if mutation == "truncate":
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    elif mutation == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
    elif mutation == "size" and fmt in SIZE_FIELDS:
        offset, layout = SIZE_FIELDS[fmt]
        limit = 2 ** (8 * struct.calcsize(layout) - (1 if layout[-1] in "ih" else 0)) - 1
        sides = st.one_of(st.sampled_from([0, 1, 16, 8192, 8193, 65535, 16_000_000]), st.integers(0, limit))
        for at in (offset, offset + struct.calcsize(layout)):
            data[at : at + struct.calcsize(layout)] = struct.pack(layout, min(draw(sides), limit))
    elif mutation == "tail":
        data += draw(st.binary(min_size=1, max_size=256))
    return bytes(data)


@fuzz_settings(FILES)
@given(data=images())
def test_images(data: bytes) -> None:
    """`read_image`, what every upload goes through: an RGB image within the pixel, side and aspect limits, or
    an InputImageError naming the file and the problem."""
    image = TALLY.attempt("images", lambda: read_image(data, name="photo.png"))
    if image is not None:
        width, height = image.size
        assert image.mode == "RGB"
        assert 1 <= min(width, height) and max(width, height) <= MAX_INPUT_SIDE
        assert (
            max(width, height) <= MAX_INPUT_ASPECT * min(width, height) and width * height <= MAX_INPUT_PIXELS
        )


# Zips ------------------------------------------------------------------------------------------------------------

MEMBER_NAMES = st.one_of(
    st.sampled_from(
        [
            "a.png",
            "b.jpg",
            "c.txt",
            "a.txt",
            "dir/",
            "dir/d.png",
            "../up.png",
            "/etc/x.png",
            "C:\\x.png",
            "..\\x.png",
            "__MACOSX/._a.png",
            ".hidden.png",
            "x" * 300 + ".png",
            "é.png",
            "A.PNG",
            "a\nb.png",
            "a\x00.png",
            "notes.pdf",
            "./e.png",
            "deep/" * 30 + "f.png",
        ]
    ),
    st.text(ANY_CHAR.filter(lambda c: not 0xD800 <= ord(c) <= 0xDFFF), min_size=1, max_size=40),
)


def png(seed: int, side: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (seed % 256, 40, 90)).save(buffer, "PNG")
    return buffer.getvalue()


@st.composite
def zips(draw) -> bytes:
    """A zip made with zipfile (members with random names, contents, compression, symlink bits), then perhaps
    truncated, bit-flipped or with sizes in its central directory rewritten."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=1024))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        if draw(st.booleans()):  # a dataset that would pass: 3 to 5 images, some with captions
            for index in range(draw(st.integers(3, 5))):
                archive.writestr(f"photos/img{index}.png", png(index))
                if draw(st.booleans()):
                    archive.writestr(
                        f"photos/img{index}.txt", draw(st.text(max_size=40)).encode("utf-8", "replace")
                    )
        for index in range(draw(st.integers(0, 8))):
            info = zipfile.ZipInfo(draw(MEMBER_NAMES))
            info.compress_type = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
            if draw(st.integers(0, 9)) == 0:
                info.external_attr = 0o120777 << 16  # a symbolic link
            content = draw(st.one_of(st.just(png(index)), st.binary(max_size=200), st.just(b"\0" * 4096)))
            try:
                archive.writestr(info, content)
            except (ValueError, UserWarning):
                continue
    data = bytearray(buffer.getvalue())
    mutation = draw(st.sampled_from(["none", "none", "truncate", "flip", "sizes", "count"]))
    directory = data.rfind(b"PK\x01\x02")
    if mutation == "truncate":
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    elif mutation == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
    elif mutation == "sizes" and directory >= 0:
        # the last member's declared compressed and uncompressed sizes in the central directory
        sizes = st.one_of(st.sampled_from([0, 1, 2**20 + 1, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))
        data[directory + 20 : directory + 28] = struct.pack("<II", draw(sizes), draw(sizes))
    elif mutation == "count":
        end = data.rfind(b"PK\x05\x06")
        if end >= 0:
            data[end + 8 : end + 12] = struct.pack("<HH", *([draw(st.integers(0, 65535))] * 2))
    return bytes(data)


@fuzz_settings(FILES)
@given(data=zips())
def test_zips(data: bytes, tmp_path_factory) -> None:
    """`unpack_dataset`, what a LoRA dataset goes through: an image count with only the files it wrote in the
    folder, or a refusal (DatasetError, or InputImageError for an image that does not decode) that leaves no
    folder behind and nothing outside it."""
    root = tmp_path_factory.mktemp("zip")
    folder = root / "dataset"
    count = TALLY.attempt("zips", lambda: unpack_dataset(data, folder))
    written = sorted(p.relative_to(root) for p in root.rglob("*"))
    if count is None:
        assert written == [], written
    else:
        assert all(p.parent == Path("dataset") for p in written[1:]), written
        assert count == sum(1 for p in folder.iterdir() if p.suffix.lower() != ".txt")
