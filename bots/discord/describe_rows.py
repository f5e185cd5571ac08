"""The components of a /describe result: one button per prompt, `atelier:describe:<job_id>:<n>`, which runs
/imagine with prompt n. Plain JSON built by the worker's replier (no discord.py); the bot parses the ids back
with `DESCRIBE_TEMPLATE` (`bots.discord.guided`)."""

from __future__ import annotations

from bots.discord.components import JOB_ID, PRIMARY

DESCRIBE_TEMPLATE = rf"atelier:describe:(?P<job_id>{JOB_ID}):(?P<index>[0-9])"


def describe_id(job_id: str, index: int) -> str:
    return f"atelier:describe:{job_id}:{index}"


def describe_rows(job_id: str, prompts: list[str]) -> list[dict]:
    buttons = [
        {"type": 2, "style": PRIMARY, "label": f"Imagine {n + 1}", "custom_id": describe_id(job_id, n)}
        for n in range(len(prompts))
    ]
    return [{"type": 1, "components": buttons}] if buttons else []


def describe_text(user_id: int, prompts: list[str]) -> str:
    lines = [f"<@{user_id}> four prompts for your image:"]
    lines += [f"**{n + 1}.** {prompt}" for n, prompt in enumerate(prompts)]
    return "\n".join(lines)
