"""Block Kit for everything the app posts: the status message of a job in each of its states, and the message of
results with its action buttons. Pure functions from data to `{"text", "blocks"}`, so both the app (which posts
the first status) and the worker's replier (which edits it) draw the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bots.slack.ids import ActionRef
from jobs.editing import LOOP_ACTIONS, LOOP_KINDS
from jobs.relax import lane_note

PROGRESS_CELLS = 10
_EMOJI_NAMES = {
    "🪄": ":magic_wand:",
    "🔍": ":mag:",
    "↔️": ":left_right_arrow:",
    "⬅️": ":arrow_left:",
    "➡️": ":arrow_right:",
    "⬆️": ":arrow_up:",
    "⬇️": ":arrow_down:",
}  # the loop's emoji, as Slack names them
MAX_BUTTONS_PER_BLOCK = 25  # Slack's limit for the elements of one actions block
WITHHELD_NOTE = (
    "the safety classifier flagged them and this channel withholds flagged images; an admin can review them "
    "with `/atelier review`, or turn the filter off with `/atelier safety off`"
)


class ImageLike(Protocol):
    index: int
    seed: int
    width: int
    height: int


def escape(text: str) -> str:
    """Make user text literal in mrkdwn: `<`, `>` and `&` would otherwise start links and mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


VERBS = {
    "imagine": "Imagining",
    "vary": "Making variations",
    "inpaint": "Inpainting",
    "upscale": "Upscaling",
    "enhance": "Restoring faces",
    "train_lora": "Training",
}
SEEDED = frozenset({"imagine", "vary", "inpaint"})  # kinds a reroll can repeat with a new seed


def title(spec: dict) -> str:
    """What the job is, as plain text: its prompt, or for the kinds without one what they do."""
    if spec.get("prompt"):
        return str(spec["prompt"])
    kind = spec.get("kind", "")
    if kind == "upscale":
        return f"Upscale ×{spec.get('scale')}"
    if kind == "train_lora":
        return f"LoRA {spec.get('name')}"
    return {"enhance": "Enhanced faces", "vary": "Variations", "inpaint": "Inpainting"}.get(kind, "Image")


def describe(spec: dict) -> str:
    """One line saying what was asked: for an imagine spec the model, size, steps, count and seed; for the
    other kinds what they change (the upscale factor, the face restorer, the variation strength)."""
    kind = spec.get("kind", "imagine")
    if kind == "train_lora":
        return (
            f"{spec.get('model', '?')} · {spec.get('steps')} steps · rank {spec.get('rank')} · "
            f"trigger: {escape(str(spec.get('trigger', '')))}"
        )
    if kind == "upscale":
        w, h, scale = spec.get("width", 0), spec.get("height", 0), spec.get("scale", 1)
        return f"{spec.get('model', '?')} · ×{scale} · {w}×{h} → {w * scale}×{h * scale}"
    if kind == "enhance":
        line = f"{spec.get('model', '?')} · {spec.get('width')}×{spec.get('height')}"
        if spec.get("upscaler"):
            line += f" · upscaled ×{spec.get('scale')} by {spec['upscaler']}"
        return line
    parts = [spec.get("model", "?")]
    if kind == "imagine":
        parts.append(f"{spec.get('width')}×{spec.get('height')}")
    elif kind == "vary":
        parts.append(f"strength {spec.get('strength')}")
    elif kind == "inpaint":
        parts.append(str(spec.get("mode")))
    parts.append(f"{spec.get('steps')} steps")
    if spec.get("count", 1) > 1:
        parts.append(f"{spec['count']} images")
    parts.append(f"seed {spec.get('seed')}")
    if spec.get("negative"):
        parts.append(f"no: {escape(spec['negative'])}")
    return " · ".join(str(p) for p in parts)


def queued_status(
    job_id: str,
    spec: dict,
    requester: str | None,
    position: int | None,
    eta_s: float | None,
    lane: str = "fast",
) -> dict:
    """Waiting: `position` 1 starts next, 0 is starting now (as `jobs.queue_status` counts), None is unknown."""
    if position is None:
        line = ":hourglass_flowing_sand: Queued"
    elif position == 0:
        line = ":hourglass_flowing_sand: Starting"
    else:
        line = f":hourglass_flowing_sand: Queued, position {position} in the queue"
    if eta_s is not None:
        line += f" · ready in about {_duration(eta_s)}"
    if lane == "relax":
        line += f"\n:turtle: {lane_note()}"
    return _status(job_id, spec, requester, line, cancellable=True)


def progress_status(
    job_id: str, spec: dict, requester: str | None, step: int, total: int, loss: float | None = None
) -> dict:
    """Running: a bar, the step, and for a training the latest loss."""
    total = max(total, 1)
    filled = min(PROGRESS_CELLS, round(PROGRESS_CELLS * step / total))
    bar = "▰" * filled + "▱" * (PROGRESS_CELLS - filled)
    verb = VERBS.get(spec.get("kind", "imagine"), "Working")
    line = f":art: {verb} {bar} {round(100 * step / total)}% · step {step}/{total}"
    if loss is not None:
        line += f" · loss {loss:.4f}"
    return _status(job_id, spec, requester, line, cancellable=True)


def trained_status(job_id: str, spec: dict, requester: str | None, loss: float | None) -> dict:
    """A finished training: how long it trained and its last loss; the samples are in the thread."""
    line = f":white_check_mark: Done: trained {spec.get('steps')} steps"
    if loss is not None:
        line += f", final loss {loss:.4f}"
    return _status(job_id, spec, requester, line + "; samples in this thread")


def lora_ready_message(spec: dict, requester: str | None, samples: int) -> dict:
    """The announcement under a trained LoRA's samples: how to use it."""
    name = spec.get("name")
    who = f"<@{requester}>: " if requester else ""
    text = f"{who}LoRA `{name}` is ready: use `--lora {name}:0.8`"
    detail = (
        f"in /imagine in this workspace · trigger: {escape(str(spec.get('trigger', '')))} · {samples} samples"
    )
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": detail}]},
        ],
    }


def done_status(job_id: str, spec: dict, requester: str | None, count: int, withheld: int = 0) -> dict:
    """Finished: `count` images posted in the thread, `withheld` held back by the safety filter."""
    if count:
        line = f":white_check_mark: Done: {_images(count)} in this thread"
        if withheld:
            line += f"; {withheld} withheld by the safety filter"
    else:
        line = f":see_no_evil: Done: {_images(withheld)} withheld by the safety filter"
    return _status(job_id, spec, requester, line)


def failed_status(job_id: str, spec: dict, requester: str | None, message: str) -> dict:
    return _status(job_id, spec, requester, f":warning: Failed: {escape(message)}")


def cancelled_status(job_id: str, spec: dict, requester: str | None, message: str) -> dict:
    """A job that will not run (on), with who cancelled it: mrkdwn `message`, e.g. "Cancelled by <@U1>."."""
    return _status(job_id, spec, requester, f":no_entry_sign: {message}")


def stopping_status(job_id: str, spec: dict, requester: str | None, by: str) -> dict:
    """A running job whose cancel was requested: the worker stops it after the current step."""
    return _status(
        job_id, spec, requester, f":no_entry_sign: Cancelled by <@{by}>: stopping after this step…"
    )


def result_message(
    job_id: str, spec: dict, requester: str | None, images: Sequence[ImageLike], withheld: int = 0
) -> dict:
    """The message under the uploaded images: seeds, and U/V/reroll/faces buttons that carry the job id. An
    upscaled image gets no U (once is enough), restored faces no Faces, and only seeded kinds a Reroll. Images
    the safety filter withheld (`withheld` of them) get a line saying so, and no buttons."""
    kind = spec.get("kind", "imagine")
    seeds = ", ".join(str(i.seed) for i in images)
    who = f"<@{requester}>: " if requester else ""
    text = f"{who}{escape(title(spec))}"
    numbered = len(images) > 1
    upscale = [_button(f"U{i.index + 1}", ActionRef("upscale", job_id, i.index)) for i in images]
    variations = [_button(f"V{i.index + 1}", ActionRef("variations", job_id, i.index)) for i in images]
    faces = [
        _button(f"Faces {i.index + 1}" if numbered else "Enhance faces", ActionRef("faces", job_id, i.index))
        for i in images
    ]
    reroll = [_button(":repeat: Reroll", ActionRef("reroll", job_id, 0))] if kind in SEEDED else []
    if kind == "upscale":
        upscale = []
    if kind == "enhance":
        faces = []
    loop: list[list[dict]] = []
    # A single image (one made, one shown): the editing loop instead of U1 and V1, as on Discord.
    if len(images) == 1 and spec.get("count", 1) == 1 and kind in LOOP_KINDS:
        upscale, variations = [], []
        loop = [[] for _ in range(1 + max(action.row for action in LOOP_ACTIONS))]
        for action in LOOP_ACTIONS:
            label = " ".join(part for part in (_EMOJI_NAMES.get(action.emoji or ""), action.label) if part)
            loop[action.row].append(_button(label, ActionRef(action.name, job_id, images[0].index)))
    details = f"{describe(spec)} · seeds {seeds}" if images else describe(spec)
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": details}]},
    ]
    if withheld:
        note = f":see_no_evil: {_images(withheld)} withheld: {WITHHELD_NOTE}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    rows = [*((f"loop{number}", row) for number, row in enumerate(loop)), ("upscale", upscale)]
    for name, row in (*rows, ("variations", variations), ("more", reroll + faces)):
        if not row:
            continue
        for start in range(0, len(row), MAX_BUTTONS_PER_BLOCK):
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"{name}:{job_id}:{start}",
                    "elements": row[start : start + MAX_BUTTONS_PER_BLOCK],
                }
            )
    return {"text": text, "blocks": blocks}


def _status(job_id: str, spec: dict, requester: str | None, line: str, *, cancellable: bool = False) -> dict:
    who = f"<@{requester}> " if requester else ""
    prompt = escape(title(spec))
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{who}*{prompt}*"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": describe(spec)}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": line}},
    ]
    if cancellable:
        cancel = _button("Cancel", ActionRef("cancel", job_id, 0))
        cancel["style"] = "danger"
        blocks.append({"type": "actions", "block_id": f"status:{job_id}", "elements": [cancel]})
    return {"text": f"{prompt}: {line}", "blocks": blocks}


def _button(label: str, ref: ActionRef) -> dict:
    code = ref.encode()
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "action_id": code,
        "value": code,
    }


def _images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def _duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{round(seconds / 60)} min"
