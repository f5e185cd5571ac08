"""What the Discord end-to-end tests check again and again: jobs by interaction, results, edit spacing."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools

import numpy as np
from PIL import Image as PILImage

from engine.output import png_bytes
from jobs.queue import job_id_for
from tests.discord.emulator import DiscordEmulator, Interaction, Message
from tests.discord.stack import Stack

MIN_EDIT_SPACING_S = 1.0
EPHEMERAL = 64


def job_id_of(interaction: Interaction) -> str:
    return job_id_for(f"discord:interaction:{interaction.id}")


async def job_row(stack: Stack, job_id: str) -> dict | None:
    row = await stack.db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    return dict(row) if row else None


async def wait_delivered(stack: Stack, job_id: str, within: float = 30) -> dict:
    """The job's row once the worker has recorded its delivery (just after the last Discord call)."""
    deadline = asyncio.get_running_loop().time() + within
    while (row := await job_row(stack, job_id)) is None or row["delivered_at"] is None:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"job {job_id} was not recorded as delivered: {row}")
        await asyncio.sleep(0.1)
    return row


async def image_sha256s(stack: Stack, job_id: str) -> list[str]:
    rows = await stack.db.fetch('SELECT sha256 FROM images WHERE job_id = $1 ORDER BY "index"', job_id)
    return [r["sha256"] for r in rows]


def followups(emulator: DiscordEmulator, interaction: Interaction) -> list[Message]:
    """Messages an interaction's token posted after its response (e.g. an ephemeral refusal)."""
    ids = [
        r.message_id for r in emulator.with_token(interaction.token) if r.method == "POST" and r.message_id
    ]
    return [emulator.messages[i] for i in ids]


def results_in(emulator: DiscordEmulator, channel_id: int) -> list[Message]:
    """Result messages (images under a Reroll button) in `channel_id`, oldest first."""
    return [
        m
        for m in emulator.messages_in(channel_id)
        if m.attachments and any(c.startswith("atelier:reroll:") for c in m.custom_ids())
    ]


def results_of(emulator: DiscordEmulator, channel_id: int, job_id: str) -> list[Message]:
    """Messages in `channel_id` with files and buttons of job `job_id` (its results)."""
    return [
        m
        for m in emulator.messages_in(channel_id)
        if m.attachments and any(f":{job_id}:" in c for c in m.custom_ids())
    ]


async def wait_result(emulator: DiscordEmulator, channel_id: int, within: float = 180) -> Message:
    """The first result message in `channel_id` (a job's thread)."""
    found = await emulator.wait_until(lambda: results_in(emulator, channel_id), within, "the result message")
    return found[0]


async def wait_status(emulator: DiscordEmulator, message_id: int, text: str, within: float = 180) -> Message:
    message = emulator.messages[message_id]
    try:
        await emulator.wait_until(lambda: text in message.content, within, f"{text!r} on the status message")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; it says {message.content!r}") from None
    return message


async def wait_bot_status_edit(emulator: DiscordEmulator, interaction: Interaction) -> None:
    """Wait until the bot has put the queue position and the Cancel button on the job's status message."""

    def done() -> bool:
        return any(
            r.method == "PATCH"
            and r.status == 200
            and "atelier:cancel:" in str((r.payload or {}).get("components"))
            for r in emulator.with_token(interaction.token)
        )

    await emulator.wait_until(done, 10, "the bot's first status edit")


def edit_gaps(emulator: DiscordEmulator) -> dict[int, list[float]]:
    """For each message, the seconds between consecutive edits that Discord accepted."""
    times: dict[int, list[float]] = {}
    for request in emulator.requests:
        if request.method == "PATCH" and request.status == 200 and request.message_id is not None:
            times.setdefault(request.message_id, []).append(request.at)
    return {m: [b - a for a, b in itertools.pairwise(ts)] for m, ts in times.items()}


def assert_edits_spaced(emulator: DiscordEmulator) -> None:
    too_close = {
        m: [round(g, 3) for g in gaps if g < MIN_EDIT_SPACING_S] for m, gaps in edit_gaps(emulator).items()
    }
    too_close = {m: g for m, g in too_close.items() if g}
    assert not too_close, f"messages edited more than once a second: {too_close}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pixels_sha256(data: bytes) -> str:
    """An image's digest as its row keeps it: of its pixels as a bare PNG, whatever recipe and signature the file
    carries (jobs.lifecycle._store)."""
    return sha256(png_bytes(PILImage.open(io.BytesIO(data))))


def noise_png(width: int, height: int) -> bytes:
    """A PNG of random pixels (an upload that no model output could be mistaken for)."""
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return png_bytes(PILImage.fromarray(pixels))


def size_of(data: bytes) -> tuple[int, int]:
    with PILImage.open(io.BytesIO(data)) as image:
        return image.size


def astronaut_png(side: int = 128) -> bytes:
    """scikit-image's bundled portrait (one frontal face, found offline by OpenCV's Haar cascade), as a PNG."""
    from skimage import data

    image = PILImage.fromarray(data.astronaut(), "RGB").resize((side, side), PILImage.Resampling.LANCZOS)
    return png_bytes(image)


def pixels(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


async def open_settings(emulator: DiscordEmulator, user: str = "alice") -> Message:
    """`/settings`: the member's ephemeral panel."""
    command = await emulator.slash("settings", {}, user=user)
    await emulator.wait_response(command)
    assert command.callback_type == 4 and command.callback_data["flags"] & EPHEMERAL
    return emulator.messages[command.original_message_id]


async def toggle(
    emulator: DiscordEmulator, panel: Message, field: str, expected: str, user: str = "alice"
) -> None:
    """Click a toggle (remix, private) on `user`'s settings panel; it must now read `expected`."""
    click = await emulator.click(panel.id, f"atelier:settings:{field}", user=user)
    await emulator.wait_response(click)
    assert click.callback_type == 7, click.callback_data  # the panel is redrawn in place
    assert f"{field} **{expected}**" in emulator.messages[panel.id].content
