"""Modals (Block Kit views): building their input blocks, and reading what was submitted.

A modal is opened with the `trigger_id` of a shortcut, which Slack honours for 3 seconds only, so everything a
modal needs to know later (the channel, the thread, the files of the message) travels in its `private_metadata`
as JSON, never in the process's memory: a submission after a restart still finds it. What a person typed is in
`view.state.values[block_id][action_id]`; each input block here uses one id for both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

MAX_METADATA_CHARS = 3000  # Slack's limit for private_metadata


async def open_on_message(
    client: AsyncWebClient, shortcut: dict, build: Callable[[list[dict], str, str], dict], images: list[dict]
) -> None:
    """Open the modal `build(images, channel, thread_ts)` for a message shortcut; its results go to the
    message's thread (the thread it is in, or a new one under it)."""
    message = shortcut.get("message") or {}
    thread_ts = message.get("thread_ts") or message["ts"]
    view = build(images, shortcut["channel"]["id"], thread_ts)
    await client.views_open(trigger_id=shortcut["trigger_id"], view=view)


def modal(callback_id: str, title: str, submit: str, blocks: list[dict], metadata: dict) -> dict:
    text = json.dumps(metadata, separators=(",", ":"))
    if len(text) > MAX_METADATA_CHARS:
        raise ValueError(f"modal metadata is {len(text)} characters; Slack keeps {MAX_METADATA_CHARS}")
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": _plain(title),
        "submit": _plain(submit),
        "close": _plain("Cancel"),
        "private_metadata": text,
        "blocks": blocks,
    }


def text_input(
    block_id: str,
    label: str,
    *,
    hint: str = "",
    placeholder: str = "",
    optional: bool = False,
    max_length: int = 0,
    initial: str = "",
    multiline: bool = False,
) -> dict:
    element: dict = {"type": "plain_text_input", "action_id": block_id}
    if initial:
        element["initial_value"] = initial
    if multiline:
        element["multiline"] = True
    if placeholder:
        element["placeholder"] = _plain(placeholder)
    if max_length:
        element["max_length"] = max_length
    return _input(block_id, label, element, hint, optional)


def select_input(
    block_id: str, label: str, options: list[tuple[str, str]], initial: str, *, hint: str = ""
) -> dict:
    """A static select of (value, label) options, `initial` chosen."""
    choices = [{"text": _plain(text), "value": value} for value, text in options]
    element = {
        "type": "static_select",
        "action_id": block_id,
        "options": choices,
        "initial_option": next(c for c in choices if c["value"] == initial),
    }
    return _input(block_id, label, element, hint, optional=False)


def file_input(
    block_id: str, label: str, filetypes: list[str], *, hint: str = "", max_files: int = 1
) -> dict:
    """Slack's `file_input` element (needs the files:read scope); always optional here."""
    element = {"type": "file_input", "action_id": block_id, "filetypes": filetypes, "max_files": max_files}
    return _input(block_id, label, element, hint, optional=True)


def note(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def metadata(view: dict) -> dict:
    return json.loads(view.get("private_metadata") or "{}")


def text_value(view: dict, block_id: str) -> str:
    """What was typed into a text input (empty when left out)."""
    return (_state(view, block_id).get("value") or "").strip()


def selected(view: dict, block_id: str) -> str | None:
    option = _state(view, block_id).get("selected_option")
    return option.get("value") if option else None


def chosen_files(view: dict, block_id: str) -> list[dict]:
    """The file objects chosen in a `file_input` (as Slack sends them: at least their `id`)."""
    return list(_state(view, block_id).get("files") or [])


def _state(view: dict, block_id: str) -> dict:
    return ((view.get("state") or {}).get("values") or {}).get(block_id, {}).get(block_id) or {}


def _input(block_id: str, label: str, element: dict, hint: str, optional: bool) -> dict:
    block = {"type": "input", "block_id": block_id, "label": _plain(label), "element": element}
    if optional:
        block["optional"] = True
    if hint:
        block["hint"] = _plain(hint)
    return block


def _plain(text: str) -> dict:
    return {"type": "plain_text", "text": text, "emoji": True}
