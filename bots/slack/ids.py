"""Button identities: `<action>:<job_id>:<index>` in both `action_id` and `value`.

All the state a click needs is in the id, never in the process's memory, so buttons keep working after the app
restarts. Slack wants action ids unique within a message; the job id and index make them so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jobs.editing import LOOP
from jobs.text import shown

ACTIONS = ("cancel", "upscale", "variations", "reroll", "faces", *LOOP)  # LOOP: the editing loop's buttons
PATTERN = re.compile(rf"^({'|'.join(ACTIONS)}):(j[0-9a-f]+):(\d+)$")


@dataclass(frozen=True)
class ActionRef:
    action: str
    job_id: str
    index: int = 0

    def encode(self) -> str:
        return f"{self.action}:{self.job_id}:{self.index}"


def decode(text: str) -> ActionRef:
    """Parse an action id; a ValueError names what did not match (a button from another app, a bad payload)."""
    match = PATTERN.match(text)
    if match is None:
        raise ValueError(f"not an Atelier action id: {shown(text)}")
    return ActionRef(match[1], match[2], int(match[3]))


def matcher(*actions: str) -> re.Pattern[str]:
    """A regex for `app.action(...)` that matches the ids of the given actions."""
    unknown = set(actions) - set(ACTIONS)
    if unknown:
        raise ValueError(f"unknown action(s): {', '.join(sorted(unknown))}")
    return re.compile(rf"^({'|'.join(actions)}):j[0-9a-f]+:\d+$")


RESULT_MESSAGE_TTL_S = 90 * 24 * 3600


def result_file_key(file_id: str) -> str:
    """Redis key naming the job and image index (`job:index`) an uploaded result file shows, so a reaction on
    the image message itself finds them."""
    return f"atelier:slack:result-file:{file_id}"


def result_message_key(channel: str, ts: str) -> str:
    """Redis key naming the job whose results a message shows (what a reaction on that message acts on)."""
    return f"atelier:slack:result:{channel}:{ts}"
