"""Block Kit of a /describe result: the four prompts, numbered, and a row of "Imagine n" buttons (`describe:<job_id>:<n>`,
handled in `bots.slack.guided`), and the finished status. Built by the worker's replier, so free of slack_bolt."""

from __future__ import annotations

from bots.slack import blocks


def describe_message(job_id: str, spec: dict, requester: str | None) -> dict:
    prompts = spec.get("prompts", [])
    who = f"<@{requester}> " if requester else ""
    sections: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{who}four prompts for your image:"}}
    ]
    buttons = []
    for n, prompt in enumerate(prompts):
        action = f"describe:{job_id}:{n}"
        sections.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{n + 1}.* {blocks.escape(prompt)}"}}
        )
        buttons.append(
            {
                "type": "button",
                "text": {"type": "plain_text", "text": f"Imagine {n + 1}"},
                "action_id": action,
                "value": action,
            }
        )
    if buttons:
        sections.append({"type": "actions", "block_id": f"describe:{job_id}", "elements": buttons})
    return {"text": "\n".join(f"{n + 1}. {p}" for n, p in enumerate(prompts)), "blocks": sections}


def described_status(job_id: str, spec: dict, requester: str | None) -> dict:
    count = len(spec.get("prompts", []))
    return blocks._status(job_id, spec, requester, f":white_check_mark: Done: {count} prompts in this thread")
