"""Button custom ids and the message components that carry them, as Discord's JSON.

All state a button needs is in its custom id (`atelier:<action>:<job_id>:<index>`), never in memory, so buttons
keep working after the bot or a worker restarts. The worker builds these rows as plain JSON (it does not run
discord.py); the bot parses the same ids with the patterns below (see `views.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from jobs.editing import LOOP, LOOP_ACTIONS, LOOP_KINDS

# Discord's button styles.
PRIMARY, SECONDARY, DANGER = 1, 2, 4
MAX_BUTTONS_PER_ROW: Final = 5
SEEDED_KINDS = frozenset({"imagine", "vary", "inpaint"})  # a reroll repeats them with a new seed

JOB_ID = r"[A-Za-z0-9_-]{1,64}"
CANCEL_TEMPLATE = rf"atelier:cancel:(?P<job_id>{JOB_ID})"
RESULT_ACTIONS = ("upscale", "vary", "faces", "reroll", "delete")
RESULT_TEMPLATE = (
    rf"atelier:(?P<action>{'|'.join(RESULT_ACTIONS)}):(?P<job_id>{JOB_ID}):(?P<index>[0-9]{{1,2}})"
)

# Per-image actions get one row each: label prefix, emoji.
_PER_IMAGE_ROWS = (("upscale", "U", None), ("vary", "V", None), ("faces", "F", "✨"))

# The editing loop (`jobs.editing.LOOP_ACTIONS`) under a single image: `atelier:<loop action>:<job_id>:<index>`.
LOOP_TEMPLATE = (
    rf"atelier:(?P<action>{'|'.join(action.name for action in LOOP_ACTIONS)}):(?P<job_id>{JOB_ID})"
    r":(?P<index>[0-9]{1,2})"
)


def cancel_id(job_id: str) -> str:
    return f"atelier:cancel:{job_id}"


def result_id(action: str, job_id: str, index: int) -> str:
    if action not in RESULT_ACTIONS:
        raise ValueError(f"unknown result action {action!r}; known: {', '.join(RESULT_ACTIONS)}")
    return f"atelier:{action}:{job_id}:{index}"


def loop_id(action: str, job_id: str, index: int) -> str:
    if action not in LOOP:
        raise ValueError(f"unknown editing action {action!r}")
    return f"atelier:{action}:{job_id}:{index}"


def modal_id(action: str, job_id: str, index: int) -> str:
    return f"atelier:remix:{action}:{job_id}:{index}"


def loop_rows(job_id: str, index: int) -> list[dict]:
    """The editing loop's buttons for image `index` of `job_id`, rows as `LOOP_ACTIONS` says, with F (faces)
    ending the first row."""
    rows: list[list[dict]] = [[] for _ in range(1 + max(action.row for action in LOOP_ACTIONS))]
    for action in LOOP_ACTIONS:
        rows[action.row].append(button(loop_id(action.name, job_id, index), action.label, emoji=action.emoji))
    rows[0].append(button(result_id("faces", job_id, index), "F", emoji="✨"))
    return [row(*buttons) for buttons in rows]


def button(custom_id: str, label: str, *, style: int = SECONDARY, emoji: str | None = None) -> dict:
    data: dict = {"type": 2, "style": style, "custom_id": custom_id}
    if label:
        data["label"] = label
    if emoji:
        data["emoji"] = {"name": emoji}
    return data


def row(*buttons: dict) -> dict:
    return {"type": 1, "components": list(buttons)}


def cancel_components(job_id: str) -> list[dict]:
    return [row(button(cancel_id(job_id), "Cancel", style=DANGER))]


def result_components(
    job_id: str, count: int, kind: str = "imagine", *, shown: Sequence[int] | None = None
) -> list[dict]:
    """The buttons under a result. A single image of a job of `LOOP_KINDS`: the editing loop (`loop_rows`), then
    reroll (for seeded kinds) and delete. Several generated images (imagine, vary, inpaint): U1…Un (upscale),
    V1…Vn (variations), F1…Fn (enhance faces), then reroll and delete. An upscale: F1…Fn and delete. Restored faces
    and a LoRA's samples: delete.

    `shown` are the indices of the images actually posted (default: all `count`); an image withheld by the
    safety filter gets no button. A row holds five buttons, so images past the fifth get no per-image buttons
    (presets allow four)."""
    if count < 1:
        raise ValueError(f"a result message needs at least one image (got {count})")
    indices = list(range(count) if shown is None else shown)[:MAX_BUTTONS_PER_ROW]
    per_image = {"upscale": _PER_IMAGE_ROWS[2:], "enhance": (), "train_lora": ()}.get(kind, _PER_IMAGE_ROWS)
    if count == 1 and len(indices) == 1 and kind in LOOP_KINDS:
        rows = loop_rows(job_id, indices[0])  # a single image: the editing loop instead of U1, V1, F1
    else:
        rows = [
            row(*(button(result_id(action, job_id, i), f"{prefix}{i + 1}", emoji=emoji) for i in indices))
            for action, prefix, emoji in per_image
            if indices
        ]
    last = [button(result_id("delete", job_id, 0), "Delete", style=DANGER, emoji="🗑️")]
    if kind in SEEDED_KINDS:
        last.insert(0, button(result_id("reroll", job_id, 0), "Reroll", style=PRIMARY, emoji="🔁"))
    rows.append(row(*last))
    return rows
