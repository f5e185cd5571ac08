"""The deferral's own path (bots/discord/acks.py) when Discord fails it: the acknowledgement still goes out once,
and the job starts from the one "thinking…" message."""

from __future__ import annotations

import pytest

from tests.discord.helpers import job_id_of, job_row, wait_status
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")

CALLBACK = r"^/interactions/\d+/[^/]+/callback$"


def callbacks(stack: Stack, token: str) -> list:
    return [r for r in stack.emulator.with_token(token) if r.path.endswith("/callback")]


async def test_a_deferral_answered_with_a_server_error_is_sent_again_and_the_job_starts(stack: Stack) -> None:
    emulator = stack.emulator
    emulator.fail("POST", CALLBACK, status=500)  # nothing done: Discord never saw it
    command = await emulator.slash("imagine", {"prompt": "a lighthouse at night --steps 2 --size 64x64"})
    await emulator.wait_response(command)

    assert command.callback_type == 5
    assert [r.status for r in callbacks(stack, command.token)] == [500, 200]
    assert command.callback_at - command.dispatched_at < 3.0  # type: ignore[operator]
    await wait_status(emulator, command.original_message_id, "Done", within=120)  # type: ignore[arg-type]
    assert (await job_row(stack, job_id_of(command)))["status"] == "succeeded"  # type: ignore[index]


async def test_a_deferral_that_reached_discord_before_its_error_is_not_sent_twice(stack: Stack) -> None:
    """A 503 after the message was made (the answer was lost, the work was not): the retry is told "already
    acknowledged", and the bot carries on with the message that exists."""
    emulator = stack.emulator
    emulator.fail("POST", CALLBACK, status=503, after_effect=True)
    command = await emulator.slash("imagine", {"prompt": "a harbour in fog --steps 2 --size 64x64"})
    await emulator.wait_response(command)

    statuses = [r.status for r in callbacks(stack, command.token)]
    assert statuses[:2] == [503, 400] and len(statuses) == 2, statuses
    status_id = command.original_message_id
    assert status_id is not None
    await wait_status(emulator, status_id, "Done", within=120)
    thinking = [m for m in emulator.messages.values() if m.id == status_id]
    assert len(thinking) == 1 and not thinking[0].deleted
    assert (await job_row(stack, job_id_of(command)))["status"] == "succeeded"  # type: ignore[index]
