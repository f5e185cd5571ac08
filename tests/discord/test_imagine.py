"""`/imagine` end to end: the real bot and worker processes against the emulator, Redis, PostgreSQL, tiny model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bots.discord.components import result_id
from tests.discord.helpers import (
    assert_edits_spaced,
    followups,
    image_sha256s,
    job_id_of,
    job_row,
    pixels_sha256,
    wait_delivered,
    wait_result,
    wait_status,
)
from tests.discord.stack import Stack, run_cli, run_cli_imagine
from tests.support import replayed_content

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")

PROMPT = "a red fox in the snow"


async def test_imagine_defers_opens_a_thread_shows_progress_and_posts_the_engines_image(
    stack: Stack, tmp_path: Path
) -> None:
    emulator = stack.emulator
    # What `atelier imagine` makes for the same request, computed meanwhile by its own in-process worker. The
    # tiny model's largest job (four 512² images, 50 steps, directly: no hires fix), so that progress edits
    # happen between the first and the last even on a machine several times faster than this one.
    reference = asyncio.create_task(
        run_cli_imagine(
            stack.env,
            tmp_path,
            PROMPT,
            *"--seed 7 --model tiny --steps 50 --size 512x512 --hires 1 --count 4".split(),
        )
    )
    await stack.idle_queue()

    command = await emulator.slash(
        "imagine", {"prompt": f"{PROMPT} --steps 50 --seed 7 --size 512x512 --hires 1 --n 4", "model": "tiny"}
    )
    await emulator.wait_response(command)
    assert command.callback_type == 5, command.callback_data  # deferred, public
    assert command.callback_at - command.dispatched_at < 3.0  # type: ignore[operator]

    status_id = command.original_message_id
    assert status_id is not None
    thread = await emulator.wait_until(lambda: emulator.channels.get(status_id), 10, "the job's thread")
    assert thread["type"] == 11 and thread["parent_id"] == str(emulator.channel_id)
    assert thread["name"] == PROMPT

    result = await wait_result(emulator, status_id)
    job_id = job_id_of(command)
    status = await wait_status(emulator, status_id, "✅ Done")

    # Progress: several coalesced edits of the status message, each with the step count, none closer than 1 s.
    progress = [
        r
        for r in emulator.requests_for(status_id, "PATCH")
        if r.status == 200 and "step" in r.payload["content"]
    ]
    assert len(progress) >= 2, [r.payload["content"] for r in emulator.requests_for(status_id, "PATCH")]
    assert all("/50" in r.payload["content"] for r in progress)
    assert len(progress) < 50  # coalesced, not one edit per step
    assert any(r.files and r.files[0].content_type == "image/jpeg" for r in progress)  # a preview
    assert_edits_spaced(emulator)
    assert status.components == [] and "Cancel" not in str(status.components)

    # The result: the PNGs the engine made, stored in the database, and their buttons.
    assert [a.filename for a in result.attachments] == [f"{job_id}-{i}.png" for i in range(4)]
    pngs = [a.data for a in result.attachments]
    assert await image_sha256s(stack, job_id) == [pixels_sha256(png) for png in pngs]
    # The CLI prints the last image's path last; the same pixels (each file has its own C2PA signature).
    assert replayed_content(pngs[-1]) == replayed_content(await reference)
    assert result.custom_ids() == [
        *(result_id(action, job_id, i) for action in ("upscale", "vary", "faces") for i in range(4)),
        result_id("reroll", job_id, 0),
        result_id("delete", job_id, 0),
    ]
    assert f"<@{emulator.users['alice']['id']}>" in result.content and "seeds 7–10" in result.content
    row = await wait_delivered(stack, job_id)
    assert row["status"] == "succeeded"


@pytest.mark.parametrize(
    ("options", "dm", "expected"),
    [
        ({"prompt": "a fox --bogus 3"}, False, "unknown flag --bogus"),
        ({"prompt": "a fox", "model": "nonexistent"}, False, "unknown txt2img model 'nonexistent'"),
        ({"prompt": "--seed 3 --steps 4"}, False, "the prompt is only flags"),
        ({"prompt": "a fox --steps 999"}, False, "steps must be between 1 and"),
        ({"prompt": "a fox"}, True, "not in direct messages"),
    ],
    ids=["unknown-flag", "unknown-model", "only-flags", "over-a-limit", "direct-message"],
)
async def test_bad_input_gets_an_ephemeral_answer_and_enqueues_nothing(
    stack: Stack, options: dict, dm: bool, expected: str
) -> None:
    emulator = stack.emulator
    command = await emulator.slash("imagine", options, dm=dm)
    await emulator.wait_response(command)

    assert command.callback_type == 4  # answered at once, not deferred
    assert command.callback_data["flags"] & 64, "the answer must be ephemeral"
    assert expected.lower() in command.callback_data["content"].lower()
    await asyncio.sleep(0.5)  # anything the bot would wrongly do next has time to happen
    assert await job_row(stack, job_id_of(command)) is None
    assert emulator.with_token(command.token) == [
        r for r in emulator.requests if "callback" in r.path and command.token in r.path
    ]


async def test_a_request_refused_at_admission_leaves_only_an_ephemeral_answer(stack: Stack) -> None:
    """A banned member's /imagine: deferred (admission needs the database), then the public "thinking…" message
    is withdrawn and the refusal is shown to the member alone; no job, no quota reservation."""
    emulator = stack.emulator
    tenant, bob = f"discord:{emulator.guild_id}", emulator.users["bob"]["id"]
    await run_cli(stack.env, "admin", "ban", tenant, bob)
    try:
        command = await emulator.slash("imagine", {"prompt": "a forbidden fruit --steps 2"}, user="bob")
        await emulator.wait_response(command)
        assert command.callback_type == 5
        found = await emulator.wait_until(
            lambda: [m for m in followups(emulator, command) if "blocked" in m.content], 10, "the refusal"
        )
        assert found[0].flags & 64
        assert emulator.messages[command.original_message_id].deleted
        assert emulator.messages[command.original_message_id].id not in emulator.channels  # no thread either
    finally:
        await run_cli(stack.env, "admin", "unban", tenant, bob)
    job_id = job_id_of(command)
    assert await job_row(stack, job_id) is None
    assert await stack.db.fetchval("SELECT count(*) FROM quota_reservations WHERE job_id = $1", job_id) == 0
