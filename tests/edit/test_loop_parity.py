"""One table of editing-loop actions (`jobs.editing.LOOP_ACTIONS`) drives both chats' buttons: walk it for each
platform, so a button that exists in Discord and not in Slack (or breaks a platform's limits) fails here."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from bots.discord.components import LOOP_TEMPLATE, result_components
from bots.slack import ids
from bots.slack.blocks import result_message
from jobs.editing import LOOP_ACTIONS, LOOP_KINDS
from jobs.queue import job_id_for

JOB = job_id_for("parity:1")


@dataclass
class OneImage:
    index: int = 0
    seed: int = 7
    width: int = 64
    height: int = 64


@pytest.mark.parametrize("kind", sorted(LOOP_KINDS))
def test_every_loop_action_is_a_button_in_discord_and_in_slack(kind: str) -> None:
    rows = result_components(JOB, 1, kind)
    discord_ids = [b["custom_id"] for r in rows for b in r["components"]]
    assert len(rows) <= 5 and all(len(r["components"]) <= 5 for r in rows)
    assert all(len(custom_id) <= 100 for custom_id in discord_ids)
    discord_actions = [m["action"] for c in discord_ids if (m := re.fullmatch(LOOP_TEMPLATE, c))]

    message = result_message(JOB, {"kind": kind, "prompt": "a kite", "model": "tiny"}, "U1", [OneImage()])
    elements = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert all(len(b["elements"]) <= 25 for b in message["blocks"] if b["type"] == "actions")
    assert all(e["text"]["text"].strip() and len(e["action_id"]) <= 255 for e in elements)
    slack_actions = [ids.decode(e["action_id"]).action for e in elements]

    table = [action.name for action in LOOP_ACTIONS]
    assert discord_actions == table
    assert [a for a in slack_actions if a in table] == table


def test_several_images_keep_u_and_v_and_no_loop() -> None:
    ids_ = [b["custom_id"] for r in result_components(JOB, 2) for b in r["components"]]
    assert not any(re.fullmatch(LOOP_TEMPLATE, c) for c in ids_)
    message = result_message(JOB, {"kind": "imagine", "prompt": "a kite"}, "U1", [OneImage(0), OneImage(1)])
    actions = [
        e["action_id"].split(":")[0]
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert "upscale" in actions and "variations" in actions and "zoom_2" not in actions
