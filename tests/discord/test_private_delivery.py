"""Private mode's results when the interaction token is gone, against the emulator with the real bot and worker:
they go to the asker's direct messages, never to the channel; with the asker's DMs closed too, the failure is
recorded with its reason and logged, and the job and its images stay stored."""

from __future__ import annotations

import time

import pytest

from jobs.delivery import posted_key
from tests.discord.emulator import DiscordEmulator, Interaction
from tests.discord.helpers import (
    EPHEMERAL,
    job_id_of,
    open_settings,
    size_of,
    toggle,
    wait_delivered,
)
from tests.discord.stack import Stack

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")

TOKEN_AGE_S = 870  # 14.5 minutes: past the worker's use of the token (14), within Discord's 15


async def private_imagine(emulator: DiscordEmulator, prompt: str, **slash) -> Interaction:
    command = await emulator.slash("imagine", {"prompt": prompt, "model": "tiny"}, **slash)
    await emulator.wait_response(command)
    assert command.callback_type == 5 and command.callback_data["flags"] & EPHEMERAL
    return command


def files_in_channel(emulator: DiscordEmulator, since: set[int]) -> list[tuple[int, int, str]]:
    """New messages in the test channel that carry files (ephemeral or not): there must be none."""
    return [
        (m.id, m.flags, m.content)
        for m in emulator.messages_in(emulator.channel_id)
        if m.id not in since and m.attachments
    ]


async def test_a_private_result_whose_token_expired_is_sent_to_the_askers_dms(stack: Stack) -> None:
    emulator = stack.emulator
    panel = await open_settings(emulator)
    await toggle(emulator, panel, "private", "on")
    expire = emulator.expire_tokens_on_file_followups()
    try:
        before = {m.id for m in emulator.messages_in(emulator.channel_id)}
        dms_before = len(emulator.dms_of("alice"))
        command = await private_imagine(emulator, "a hidden lake --steps 2 --seed 6")
        job_id = job_id_of(command)
        await wait_delivered(stack, job_id, within=180)

        tried = [r for r in emulator.with_token(command.token) if r.method == "POST" and r.files]
        assert tried and all(r.status == 401 for r in tried)  # the ephemeral followup found the token dead
        dms = emulator.dms_of("alice")[dms_before:]
        assert len(dms) == 1 and len(dms[0].attachments) == 1, [(m.content, m.attachments) for m in dms]
        assert "a hidden lake" in dms[0].content and size_of(dms[0].attachments[0].data) == (64, 64)
        assert dms[0].components == []  # a click in a DM has no server to act in
        assert files_in_channel(emulator, before) == []
        new = [m for m in emulator.messages_in(emulator.channel_id) if m.id not in before]
        assert all(m.flags & EPHEMERAL for m in new), [(m.id, m.flags, m.content) for m in new]
        assert await stack.redis.hget(posted_key(job_id), "discord:result:0") == b"dm"
    finally:
        emulator.hooks.remove(expire)
        await toggle(emulator, panel, "private", "off")


async def test_with_the_askers_dms_closed_the_failure_is_recorded_and_the_job_kept(stack: Stack) -> None:
    emulator = stack.emulator
    alice = int(emulator.users["alice"]["id"])
    panel = await open_settings(emulator)
    await toggle(emulator, panel, "private", "on")
    emulator.dms_closed.add(alice)
    try:
        before = {m.id for m in emulator.messages_in(emulator.channel_id)}
        dms_before, requests_before = len(emulator.dms_of("alice")), len(emulator.requests)
        # Minted 14.5 minutes ago: the job finishes after the worker's last use of the token.
        command = await private_imagine(
            emulator, "a locked diary --steps 2 --seed 2", minted_at=time.time() - TOKEN_AGE_S
        )
        job_id = job_id_of(command)
        row = await wait_delivered(stack, job_id, within=180)

        assert row["status"] == "succeeded" and row["error"] is None  # the job record stands
        images = await stack.db.fetchval("SELECT count(*) FROM images WHERE job_id = $1", job_id)
        assert images == 1  # and so do its images (the gallery, `atelier`)
        refused = [
            r
            for r in emulator.requests[requests_before:]
            if r.method == "POST" and r.path == f"/channels/{emulator.dm_channels[alice]}/messages"
        ]
        assert refused and all(r.status == 403 for r in refused)
        assert not [r for r in emulator.with_token(command.token) if r.method == "POST" and r.files]
        assert len(emulator.dms_of("alice")) == dms_before
        assert files_in_channel(emulator, before) == []
        recorded = await stack.redis.hget(posted_key(job_id), "discord:result:0")
        assert recorded == b"failed: DMs closed (Discord 403, code 50007)"
        worker_log = stack.processes["worker"].log
        logged = f"job {job_id}: private result not delivered"
        await emulator.wait_until(
            lambda: logged in worker_log.read_text(errors="replace"), 10, "the log line"
        )
    finally:
        emulator.dms_closed.discard(alice)
        await toggle(emulator, panel, "private", "off")
