"""0 jobs enqueued from invalid input, end to end (issue 11, item 7): invalid `/imagine` commands made by the fuzz
suite's own strategy (`test_fuzz.prompts`), sent signed to the real `atelier slack` (HTTP mode, the shared Slack
rig), each get an ephemeral refusal, and afterwards neither the run's Redis nor the database holds a job of theirs.

`test_fuzz` shows that the parser refuses them in-process; this shows that the bot acts on that refusal: nothing
between the command and the queue enqueues before or around the gate.
"""

from __future__ import annotations

import itertools

import asyncpg
import redis.asyncio as aioredis
from hypothesis import given

from bots.commands import CommandError
from bots.slack.imagine import imagine_from_text
from bots.slack.submit import command_request_id
from engine.lora import LoraLibrary, TenantLoras
from jobs.queue import job_id_for
from quotas.fairness import state_key, tag_key
from tests.security.fuzzing import check_refusal, fuzz_settings
from tests.security.test_fuzz import REGISTRY, prompts
from tests.slack.emulator import SlackEmulator
from tests.slack.rig import REDIS_DB
from tests.slack.slack_requests import post_signed_form, slash_command
from tests.support import redis_url

TEAM, CHANNEL = "TSECFUZZ", "CSECFUZZ"
COUNT = 40
QUEUE = "atelier:queue"  # the rig's image queue (settings.queue_name's default)
FRESH_WORKSPACE = TenantLoras(LoraLibrary(None), {})  # what a workspace with no LoRAs may use in the rig


def invalid_commands(count: int) -> list[tuple[str, str]]:
    """`count` distinct texts of the fuzz strategy that the bot's parser refuses, with the refusal it gives;
    repeatable (derandomized). Drawn from 10 × `count` generated cases in turn from each kind of refusal (its
    first three words), since a control character alone would otherwise refuse most of them. Texts Slack
    cannot send (not UTF-8: lone surrogates) are left out."""
    found: dict[str, str] = {}

    @fuzz_settings(count * 10)
    @given(text=prompts())
    def collect(text: str) -> None:
        if text in found:
            return
        try:
            text.encode()
        except UnicodeEncodeError:
            return
        try:
            imagine_from_text(REGISTRY, text, tiny=True, loras=FRESH_WORKSPACE)
        except CommandError as exc:
            found[text] = check_refusal(exc)

    collect()
    assert len(found) >= count, f"the strategy gave {len(found)} invalid commands, not {count}"
    kinds: dict[str, list[tuple[str, str]]] = {}
    for text, refusal in found.items():
        kinds.setdefault(" ".join(refusal.split()[:3]), []).append((text, refusal))
    in_turn = [case for cases in itertools.zip_longest(*kinds.values()) for case in cases if case]
    return in_turn[:count]


async def test_invalid_imagine_commands_through_the_slack_bot_enqueue_nothing(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    commands = invalid_commands(COUNT)
    sent: list[tuple[str, str, str]] = []  # (response name, job id the command would have had, refusal)
    for n, (text, refusal) in enumerate(commands):
        name = f"sec-fuzz-{n}"
        fields = slash_command(
            text, channel=CHANNEL, team=TEAM, response_url=slack_emulator.response_url(name)
        )
        answer = await post_signed_form(http_bot, fields)
        assert answer.status == 200 and answer.seconds < 3, (text[:200], answer)
        sent.append((name, job_id_for(command_request_id(fields)), refusal))

    def answered() -> bool:
        return all(slack_emulator.responses(name) for name, _, _ in sent)

    await slack_emulator.wait_for(answered, within_s=20, what=f"the answers to {COUNT} invalid commands")
    for (name, _, refusal), (text, _) in zip(sent, commands, strict=True):
        [reply] = slack_emulator.responses(name)
        assert reply.args["response_type"] == "ephemeral", reply.args
        assert reply.args["text"] == f":warning: {refusal}", (text[:200], reply.args["text"][:300])

    # Each refusal was its listener's last act: nothing was recorded or queued for any of them.
    job_ids = [job_id for _, job_id, _ in sent]
    rows = await db.fetch(
        "SELECT j.id FROM jobs j JOIN tenants t ON t.id = j.tenant_id "
        "WHERE t.platform = 'slack' AND t.external_id = $1",
        TEAM,
    )
    assert rows == [] and await db.fetchval("SELECT count(*) FROM jobs WHERE id = ANY($1)", job_ids) == 0
    tenant_id = await db.fetchval(
        "SELECT id FROM tenants WHERE platform = 'slack' AND external_id = $1", TEAM
    )
    client = aioredis.Redis.from_url(redis_url(REDIS_DB))
    try:
        assert [job_id for job_id in job_ids if await client.zscore(QUEUE, job_id) is not None] == []
        assert await client.exists(*(f"arq:job:{job_id}" for job_id in job_ids)) == 0
        assert await client.exists(*(tag_key(job_id) for job_id in job_ids)) == 0
        if tenant_id is not None:  # never given a fair-share turn
            assert not await client.hexists(state_key(QUEUE), f"tenant:{tenant_id}")
    finally:
        await client.aclose()
    assert not slack_emulator.api_calls("chat.postMessage", channel=CHANNEL)
