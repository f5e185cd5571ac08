"""LoRAs from Discord (issue 7): an admin trains one from attachments, its progress and samples land in the job's
thread, `/imagine --lora` then uses it in that server and no other; refusals say exactly what is wrong."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

import pytest

from jobs import events
from tests.discord import payloads as p
from tests.discord.emulator import DiscordEmulator, Interaction, Message, Upload
from tests.discord.helpers import followups, job_id_of, job_row, noise_png, wait_status
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")

MANAGER = p.MEMBER_PERMISSIONS | p.MANAGE_GUILD
STEPS = 8  # the tiny preset learns nothing in 8 steps, but every part of a real run happens


def images(count: int) -> dict[str, Upload]:
    return {f"image{i + 1}": Upload(f"shot{i}.png", noise_png(64 + 8 * i, 64)) for i in range(count)}


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def refusal_after_deferral(emulator: DiscordEmulator, command: Interaction) -> Message:
    """The ephemeral followup that replaced a withdrawn "thinking…" message."""
    await emulator.wait_response(command)
    assert command.callback_type == 5
    found = await emulator.wait_until(
        lambda: [m for m in followups(emulator, command) if m.content.startswith("❌")], 30, "the refusal"
    )
    assert found[0].flags & 64, "refusals are ephemeral"
    assert emulator.messages[command.original_message_id].deleted
    return found[0]


async def lora_rows(stack: Stack, name: str) -> list[dict]:
    return [dict(r) for r in await stack.db.fetch("SELECT * FROM loras WHERE name = $1", name)]


async def test_an_admins_training_announces_the_lora_which_works_in_its_server_only(stack: Stack) -> None:
    emulator = stack.emulator
    train = await emulator.slash(
        "atelier",
        {"name": "ink", "trigger": "zq ink", "steps": STEPS, **images(4)},
        subcommand="lora train",
        permissions=MANAGER,
    )
    await emulator.wait_response(train)
    assert train.callback_type == 5 and train.callback_at - train.dispatched_at < 3.0  # type: ignore[operator]
    thread_id = train.original_message_id
    status = await wait_status(emulator, thread_id, "✅ LoRA `ink` trained", within=300)
    job_id = job_id_of(train)
    last = await events.latest(stack.redis, job_id, "training")  # what the worker measured, on the stream
    assert last["step"] == STEPS and f"final loss {last['loss']:.4f}" in status.content
    assert status.components == []

    # Progress on the status message: the step count of this run, with the loss once the first one is out.
    progress = [
        r.payload["content"]
        for r in emulator.requests_for(thread_id, "PATCH")
        if r.status == 200 and "step" in r.payload["content"]
    ]
    assert all(f"/{STEPS}" in text for text in progress), progress
    # The samples and the announcement in the job's thread.
    (samples,) = [m for m in emulator.messages_in(thread_id) if m.attachments]
    assert "LoRA `ink` is ready: use `--lora ink:0.8`" in samples.content
    assert [a.filename for a in samples.attachments] == [f"{job_id}-0.png", f"{job_id}-1.png"]
    (row,) = await lora_rows(stack, "ink")
    assert row["status"] == "ready" and row["steps"] == STEPS and row["trigger"] == "zq ink"
    assert (await job_row(stack, job_id))["kind"] == "train_lora"

    # Members see it in autocomplete and in the list; another server sees neither.
    here = await emulator.autocomplete("imagine", "lora", "in")
    await emulator.wait_response(here)
    assert [c["value"] for c in here.callback_data["choices"]] == ["ink"]
    there = await emulator.autocomplete("imagine", "lora", "", channel_id=emulator.other_channel_id)
    await emulator.wait_response(there)
    assert there.callback_data["choices"] == []
    listing = await emulator.slash("atelier", {}, subcommand="lora list")
    await emulator.wait_response(listing)
    await emulator.wait_until(
        lambda: "`ink` · ready" in emulator.messages[listing.original_message_id].content, 10, "the list"
    )

    # This server's /imagine uses it (through its scoped name, so the worker fetches this record's weights).
    use = await emulator.slash("imagine", {"prompt": "zq a lighthouse --lora ink:1 --steps 2 --seed 5"})
    await emulator.wait_response(use)
    await wait_status(emulator, use.original_message_id, "✅ Done", within=180)
    spec = json.loads((await job_row(stack, job_id_of(use)))["spec"])
    assert spec["loras"] == [[f"ink@{row['id']}", 1.0]]
    assert (await job_row(stack, job_id_of(use)))["status"] == "succeeded"

    # Another server cannot use it: the same message as for a name that never existed, and no job.
    elsewhere = await emulator.slash(
        "imagine", {"prompt": "a lighthouse", "lora": "ink"}, channel_id=emulator.other_channel_id
    )
    said = await refusal_after_deferral(emulator, elsewhere)
    assert "unknown LoRA 'ink'" in said.content
    assert await job_row(stack, job_id_of(elsewhere)) is None


async def test_a_members_training_is_refused_and_nothing_is_stored(stack: Stack) -> None:
    emulator = stack.emulator
    command = await emulator.slash(
        "atelier", {"name": "sneaky", "trigger": "zq", **images(3)}, subcommand="lora train", user="bob"
    )
    await emulator.wait_response(command)
    assert command.callback_type == 4 and command.callback_data["flags"] & 64
    assert "Only members with the Manage Server permission" in command.callback_data["content"]
    assert "/atelier lora train" in command.callback_data["content"]
    deletion = await emulator.slash("atelier", {"name": "ink"}, subcommand="lora delete", user="bob")
    await emulator.wait_response(deletion)
    assert deletion.callback_type == 4 and "Only members" in deletion.callback_data["content"]
    await asyncio.sleep(0.5)
    assert await job_row(stack, job_id_of(command)) is None
    assert await lora_rows(stack, "sneaky") == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {
                "zip": Upload(
                    "set.zip",
                    zip_of({"../evil.png": noise_png(64, 64), "a.png": noise_png(72, 64)}),
                    "application/zip",
                )
            },
            "the zip member '../evil.png' points outside the dataset folder: refused",
        ),
        (images(2), "a LoRA needs between 3 and 200 images (got 2)"),
    ],
    ids=["path-outside", "too-few-images"],
)
async def test_a_bad_dataset_is_refused_with_the_datasets_own_words(
    stack: Stack, files: dict[str, Upload], expected: str
) -> None:
    emulator = stack.emulator
    command = await emulator.slash(
        "atelier", {"name": "bad", "trigger": "zq", **files}, subcommand="lora train", permissions=MANAGER
    )
    said = await refusal_after_deferral(emulator, command)
    assert expected in said.content, said.content
    assert await job_row(stack, job_id_of(command)) is None
    assert await lora_rows(stack, "bad") == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "attach the training images"),
        ({"zip": Upload("set.tar", b"not a zip", "application/x-tar"), **images(3)}, "not both"),
        ({"zip": Upload("set.tar", b"not a zip", "application/x-tar")}, "set.tar is not a zip file"),
        ({"image1": Upload("notes.txt", b"hi", "text/plain")}, "notes.txt is not an image"),
    ],
    ids=["nothing", "zip-and-images", "not-a-zip", "not-an-image"],
)
async def test_a_training_without_a_usable_dataset_is_refused_at_once(
    stack: Stack, options: dict, expected: str
) -> None:
    emulator = stack.emulator
    command = await emulator.slash(
        "atelier", {"name": "empty", "trigger": "zq", **options}, subcommand="lora train", permissions=MANAGER
    )
    await emulator.wait_response(command)
    assert command.callback_type == 4 and command.callback_data["flags"] & 64
    assert expected.lower() in command.callback_data["content"].lower(), command.callback_data["content"]
    assert await job_row(stack, job_id_of(command)) is None


async def test_an_unknown_lora_in_imagine_is_refused_naming_it(stack: Stack) -> None:
    emulator = stack.emulator
    command = await emulator.slash("imagine", {"prompt": "a fox --lora nowhere:0.5"})
    said = await refusal_after_deferral(emulator, command)
    assert "unknown LoRA 'nowhere'" in said.content
    assert await job_row(stack, job_id_of(command)) is None
    weight = await emulator.slash("imagine", {"prompt": "a fox", "lora": "ink:7"})
    await emulator.wait_response(weight)
    assert weight.callback_type == 4 and "between -2 and 2" in weight.callback_data["content"]
