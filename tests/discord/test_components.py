"""The buttons the worker builds parse back in the bot: same templates, within Discord's limits."""

from __future__ import annotations

import re

import pytest

from bots.discord.components import (
    CANCEL_TEMPLATE,
    LOOP_TEMPLATE,
    RESULT_TEMPLATE,
    cancel_components,
    loop_id,
    result_components,
    result_id,
)
from jobs.editing import LOOP_ACTIONS
from jobs.queue import job_id_for

JOB = job_id_for("discord:interaction:1234567890123456789")


def _buttons(rows: list[dict]) -> list[dict]:
    return [b for r in rows for b in r["components"]]


@pytest.mark.parametrize("count", [2, 4, 7])
def test_result_buttons_fit_discord_and_carry_the_job(count: int) -> None:
    rows = result_components(JOB, count)
    assert len(rows) <= 5 and all(len(r["components"]) <= 5 for r in rows)
    labels = [b["label"] for b in _buttons(rows)]
    shown = min(count, 5)
    assert labels[:shown] == [f"U{i + 1}" for i in range(shown)]
    assert labels[shown : 2 * shown] == [f"V{i + 1}" for i in range(shown)]
    assert labels[-2:] == ["Reroll", "Delete"]
    for button in _buttons(rows):
        match = re.fullmatch(RESULT_TEMPLATE, button["custom_id"])
        assert match and match["job_id"] == JOB and len(button["custom_id"]) <= 100


def test_cancel_button_parses_back() -> None:
    (button,) = _buttons(cancel_components(JOB))
    assert re.fullmatch(CANCEL_TEMPLATE, button["custom_id"])["job_id"] == JOB
    assert not re.fullmatch(RESULT_TEMPLATE, button["custom_id"])


def test_an_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown result action 'explode'"):
        result_id("explode", JOB, 0)


def test_a_single_image_offers_the_editing_loop_and_restored_faces_only_delete() -> None:
    loop = [*(loop_id(action.name, JOB, 0) for action in LOOP_ACTIONS[:4]), result_id("faces", JOB, 0)]
    loop += [loop_id(action.name, JOB, 0) for action in LOOP_ACTIONS[4:]]
    upscale = [b["custom_id"] for b in _buttons(result_components(JOB, 1, "upscale"))]
    assert upscale == [*loop, result_id("delete", JOB, 0)]
    single = result_components(JOB, 1)
    assert [b["custom_id"] for b in _buttons(single)] == [
        *loop,
        result_id("reroll", JOB, 0),
        result_id("delete", JOB, 0),
    ]
    assert len(single) <= 5 and all(len(r["components"]) <= 5 for r in single)
    for button in _buttons(single):
        assert len(button["custom_id"]) <= 100 and (button.get("label") or button.get("emoji"))
        assert re.fullmatch(LOOP_TEMPLATE, button["custom_id"]) or re.fullmatch(
            RESULT_TEMPLATE, button["custom_id"]
        )
    assert [b["custom_id"] for b in _buttons(result_components(JOB, 1, "enhance"))] == [
        result_id("delete", JOB, 0)
    ]


def test_an_image_withheld_by_the_safety_filter_gets_no_button() -> None:
    rows = result_components(JOB, 2, shown=[1])
    assert [b["label"] for b in _buttons(rows)] == ["U2", "V2", "F2", "Reroll", "Delete"]
    nothing_shown = result_components(JOB, 1, shown=[])
    assert [b["custom_id"] for b in _buttons(nothing_shown)] == [
        result_id("reroll", JOB, 0),
        result_id("delete", JOB, 0),
    ]


def test_a_loras_samples_offer_only_delete() -> None:
    assert [b["custom_id"] for b in _buttons(result_components(JOB, 2, "train_lora"))] == [
        result_id("delete", JOB, 0)
    ]
