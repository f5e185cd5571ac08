"""The relax lane in Discord (issue 17): `--relax` in /imagine's prompt, and the lane button of /settings (auto →
relax → fast → auto) as the member's default; the bot's status message says the job is in the relax lane, and
its reservation is a relax one (not charged against the fast budget). The server is put on the free tier (which
allows relax) for the test and back on its tier after; on a tier without relax, --relax is refused by name."""

from __future__ import annotations

import asyncio

from tests.discord import payloads as p
from tests.discord.helpers import followups, job_id_of, open_settings, toggle, wait_delivered
from tests.discord.stack import Stack
from tests.support import run_atelier


def _said_relax(stack: Stack, interaction) -> bool:
    return any(
        r.method == "PATCH" and "relax lane" in str((r.payload or {}).get("content")).lower()
        for r in stack.emulator.with_token(interaction.token)
    )


async def _lane(stack: Stack, job_id: str) -> str:
    return await stack.db.fetchval("SELECT lane FROM quota_reservations WHERE job_id = $1", job_id)


def _tier(stack: Stack, tier: str | None = None) -> str:
    args = ["admin", "tier", f"discord:{stack.emulator.guild_id}", *([tier] if tier else [])]
    done = run_atelier(*args, cwd=stack.workdir, env=stack.env)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _admitted(stack: Stack, interaction) -> None:
    """Wait until the job is recorded; a refusal (a follow-up instead) fails at once, saying why."""
    job_id = job_id_of(interaction)

    async def recorded() -> bool:
        return await stack.db.fetchval("SELECT count(*) FROM jobs WHERE id = $1", job_id) > 0

    deadline = asyncio.get_running_loop().time() + 60
    while not await recorded():
        refusals = followups(stack.emulator, interaction)
        assert not refusals, f"refused: {refusals[0].content}"
        assert asyncio.get_running_loop().time() < deadline, f"job {job_id} was never recorded"
        await asyncio.sleep(0.1)


async def test_relax_flag_and_the_settings_lane_choose_the_relax_lane(stack: Stack) -> None:
    emulator = stack.emulator
    refused = await emulator.slash("imagine", {"prompt": "a fox --relax", "model": "tiny"})
    await emulator.wait_response(refused)
    await emulator.wait_until(lambda: followups(emulator, refused), 30, "the refusal")
    assert "relax lane is not available on the priority tier" in followups(emulator, refused)[0].content

    before = _tier(stack).split("tier ")[1].split()[0]
    _tier(stack, "free")
    # A member of its own: free allows 3 unfinished jobs and 25 images a day a person, and earlier tests'
    # members (alice above all) may have used both.
    emulator.users.setdefault("relaxer", p.user(p.mint(), "relaxer"))
    try:
        flagged = await emulator.slash(
            "imagine", {"prompt": "a fox --relax --steps 2 --seed 1", "model": "tiny"}, user="relaxer"
        )
        await emulator.wait_response(flagged)
        await _admitted(stack, flagged)
        await wait_delivered(stack, job_id_of(flagged), within=180)
        assert await _lane(stack, job_id_of(flagged)) == "relax"
        await emulator.wait_until(
            lambda: _said_relax(stack, flagged), 30, "the relax lane on the status message"
        )

        conflict = await emulator.slash("imagine", {"prompt": "a fox --relax --fast", "model": "tiny"})
        await emulator.wait_response(conflict)  # refused before any deferral: the flags do not parse
        assert conflict.callback_type == 4, conflict.callback_data
        assert "--relax and --fast ask for different lanes" in conflict.callback_data["content"]

        panel = await open_settings(emulator, user="relaxer")
        await toggle(emulator, panel, "lane", "relax", user="relaxer")
        chosen = await emulator.slash(
            "imagine", {"prompt": "a hare --steps 2 --seed 2", "model": "tiny"}, user="relaxer"
        )
        await emulator.wait_response(chosen)
        await _admitted(stack, chosen)
        await wait_delivered(stack, job_id_of(chosen), within=180)
        assert await _lane(stack, job_id_of(chosen)) == "relax"
        await toggle(emulator, panel, "lane", "fast", user="relaxer")
        await toggle(emulator, panel, "lane", "auto", user="relaxer")
    finally:
        _tier(stack, before)
        await stack.db.execute("UPDATE member_settings SET lane = ''")  # as the other tests expect
