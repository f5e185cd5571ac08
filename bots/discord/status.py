"""The words on a job's status message, the same whether the bot or a worker writes them."""

from __future__ import annotations

import re

BAR_WIDTH = 20
PROMPT_SHOWN_CHARS = 300
_MARKDOWN = re.compile(r"([\\*_~`|\[\]])")


def quote_prompt(prompt: str) -> str:
    """The prompt in bold, markdown escaped and shortened, so a prompt cannot format (or break) the message."""
    prompt = " ".join(prompt.split())
    shown = prompt if len(prompt) <= PROMPT_SHOWN_CHARS else prompt[: PROMPT_SHOWN_CHARS - 1] + "…"
    escaped = _MARKDOWN.sub(r"\\\1", shown)
    return f"**{escaped}**"


def progress_bar(step: int, total: int) -> str:
    filled = round(BAR_WIDTH * step / total) if total else 0
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def queued_text(prompt: str, position: int | None, eta_s: float | None) -> str:
    """`position` 1 starts next, 0 is running, None unknown; `eta_s` is the time until it should be done."""
    if position == 0:
        where = "⚙️ Running."
    elif position is None:
        where = "⏳ Queued."
    elif position == 1:
        where = "⏳ Queued: next up."
    else:
        where = f"⏳ Queued: position {position}."
    if eta_s:
        where += f" Ready in about {_duration(eta_s)}."
    return f"{quote_prompt(prompt)}\n{where}"


def running_text(prompt: str) -> str:
    return f"{quote_prompt(prompt)}\n⚙️ Running."


def progress_text(prompt: str, step: int, total: int) -> str:
    return f"{quote_prompt(prompt)}\n`{progress_bar(step, total)}` step {step}/{total}"


def done_text(prompt: str, count: int, in_thread: bool) -> str:
    where = "in the thread" if in_thread else "below"
    return f"{quote_prompt(prompt)}\n✅ Done: {count} image{'s' if count != 1 else ''} {where}."


def failed_text(prompt: str, message: str) -> str:
    return f"{quote_prompt(prompt)}\n❌ {message}"


def cancelled_text(prompt: str, message: str) -> str:
    return f"{quote_prompt(prompt)}\n🚫 {message}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"
