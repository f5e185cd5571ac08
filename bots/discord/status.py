"""The words on a job's status message, the same whether the bot or a worker writes them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from jobs.relax import lane_note

if TYPE_CHECKING:
    from storage.models import Job

BAR_WIDTH = 20
PROMPT_SHOWN_CHARS = 300
_MARKDOWN = re.compile(r"([\\*_~`|\[\]])")


def quote_prompt(prompt: str) -> str:
    """The prompt in bold, markdown escaped and shortened, so a prompt cannot format (or break) the message."""
    prompt = " ".join(prompt.split())
    shown = prompt if len(prompt) <= PROMPT_SHOWN_CHARS else prompt[: PROMPT_SHOWN_CHARS - 1] + "…"
    escaped = _MARKDOWN.sub(r"\\\1", shown)
    return f"**{escaped}**"


def title_of(job: Job) -> str:
    """What a job's status message is headed with: the title the bot gave it (a prompt, "LoRA ink (trigger:
    zq)" for a training), else its spec's prompt."""
    return (job.reply_target or {}).get("data", {}).get("prompt") or job.spec.get("prompt", "")


def progress_bar(step: int, total: int) -> str:
    filled = round(BAR_WIDTH * step / total) if total else 0
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def queued_text(prompt: str, position: int | None, eta_s: float | None, lane: str = "fast") -> str:
    """`position` 1 starts next, 0 is running, None unknown; `eta_s` is the time until it should be done, at the
    measured pace (`jobs.queue_status`); a relax-lane job says so (`jobs.relax.lane_note`)."""
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
    if lane == "relax":
        where += f"\n🐢 {lane_note()}"
    return f"{quote_prompt(prompt)}\n{where}"


def running_text(prompt: str, lane: str = "fast") -> str:
    return f"{quote_prompt(prompt)}\n⚙️ Running{' in the relax lane' if lane == 'relax' else ''}."


def progress_text(prompt: str, step: int, total: int, loss: float | None = None) -> str:
    """The bar and the step count; a LoRA training's latest loss after them."""
    text = f"{quote_prompt(prompt)}\n`{progress_bar(step, total)}` step {step}/{total}"
    return text + (f" · loss {loss:.4f}" if loss is not None else "")


def done_text(prompt: str, count: int, in_thread: bool, withheld: int = 0) -> str:
    where = "in the thread" if in_thread else "below"
    text = f"{quote_prompt(prompt)}\n✅ Done: {count} image{'s' if count != 1 else ''} {where}."
    return text + (f" {withheld} withheld by the safety filter." if withheld else "")


def lora_ready_text(name: str, trigger: str) -> str:
    """The announcement under a trained LoRA's sample images."""
    return (
        f"LoRA `{name}` is ready: use `--lora {name}:0.8` in /imagine on this server "
        f"(its trigger word: `{trigger}`). Samples:"
    )


def trained_text(prompt: str, name: str, loss: float | None, in_thread: bool) -> str:
    final = f", final loss {loss:.4f}" if loss is not None else ""
    where = "in the thread" if in_thread else "below"
    return f"{quote_prompt(prompt)}\n✅ LoRA `{name}` trained{final}: samples {where}."


def failed_text(prompt: str, message: str) -> str:
    return f"{quote_prompt(prompt)}\n❌ {message}"


def cancelled_text(prompt: str, message: str) -> str:
    return f"{quote_prompt(prompt)}\n🚫 {message}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"
