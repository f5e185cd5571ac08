"""LoRA training from Slack (issue 7): an admin trains from a zip link or from a message's images, progress and
samples go to the thread, the LoRA is announced and `/imagine --lora` then works in that workspace only."""

from __future__ import annotations

import io
import json
import zipfile

import asyncpg

from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import (
    a_png,
    imagined,
    job_row,
    message_shortcut,
    post_signed_form,
    slash_command,
    trained,
    view_submission,
)

TEAM, OTHER_TEAM = "TLORA", "TLORAOTHER"


def dataset_zip(count: int = 4) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            archive.writestr(f"img{i}.png", a_png(64, 64 + 8 * i))
    return buffer.getvalue()


async def slash(
    http_bot: str,
    emulator: SlackEmulator,
    command: str,
    text: str,
    *,
    user: str,
    name: str,
    channel: str = "CLORA",
    team: str = TEAM,
) -> str:
    """Type `command text` as `user`; return the ephemeral answer (or None when the command answers nothing)."""
    fields = slash_command(
        text, channel=channel, team=team, user=user, response_url=emulator.response_url(name)
    )
    fields["command"] = command
    answer = await post_signed_form(http_bot, fields)
    assert answer.status == 200 and answer.seconds < 3
    reply = (
        await emulator.wait_for(lambda: emulator.responses(name), what=f"the answer to {command} {text}")
    )[0]
    assert reply.args["response_type"] == "ephemeral", reply.args
    return reply.args["text"]


async def lora_rows(db: asyncpg.Connection, team: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT l.* FROM loras l JOIN tenants t ON t.id = l.tenant_id WHERE t.platform = 'slack' AND "
        "t.external_id = $1",
        team,
    )


async def test_an_admins_training_is_announced_in_its_thread_and_only_that_workspace_can_use_it(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    archive = slack_emulator.add_file(dataset_zip(), "ink.zip", "application/zip")
    train = f"lora train ink zq ink <{archive['permalink']}> --steps 4"
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    refused = await slash(http_bot, slack_emulator, "/atelier", train, user="U1", name="lora-refused")
    assert "Only this workspace's admins and owners" in refused
    assert not slack_emulator.downloads(archive["id"])
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before and not await lora_rows(db, TEAM)

    started = await slash(http_bot, slack_emulator, "/atelier", train, user="UADMIN", name="lora-train")
    assert "Training LoRA `ink`" in started and "No worker serves" not in started, started
    story = await trained(slack_emulator, "CLORA")
    assert "LoRA `ink` is ready: use `--lora ink:0.8`" in story.ready.args["text"]
    assert len(story.samples) == 2  # the samples, made with the new LoRA, in the thread
    final = story.updates[-1].args["text"]
    assert "Done: trained 4 steps, final loss" in final, final
    for update in story.updates:  # whichever progress frames the machine's speed let through, well formed
        text = update.args["text"]
        assert "Done" in text or "Queued" in text or "Starting" in text or "step " in text, text
    [lora] = await lora_rows(db, TEAM)
    assert (lora["name"], lora["status"], lora["trigger"]) == ("ink", "ready", "zq ink")
    assert (await job_row(db, story.job_id))["kind"] == "train_lora"

    # The workspace uses it: the spec carries its scoped name, and the job succeeds.
    await slash_imagine(http_bot, slack_emulator, "zq ink a cat --steps 2 --lora ink:1", TEAM, "CLORAUSE")
    made = await imagined(slack_emulator, "CLORAUSE")
    row = await job_row(db, made.job_id)
    assert json.loads(row["spec"])["loras"] == [[f"ink@{lora['id']}", 1.0]] and row["status"] == "succeeded"

    # Another workspace does not know it.
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    other = await slash(
        http_bot,
        slack_emulator,
        "/imagine",
        "zq ink a cat --lora ink:1",
        user="U1",
        name="lora-other",
        channel="CLORAOTHER",
        team=OTHER_TEAM,
    )
    assert "unknown LoRA 'ink'" in other, other
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before

    listing = await slash(http_bot, slack_emulator, "/atelier", "lora list", user="UADMIN", name="lora-list")
    assert "`ink`: ready" in listing and "trigger: zq ink" in listing, listing
    taken = await slash(http_bot, slack_emulator, "/atelier", train, user="UADMIN", name="lora-taken")
    assert "the LoRA name 'ink' is already taken here (ready)" in taken, taken
    deleted = await slash(
        http_bot, slack_emulator, "/atelier", "lora delete ink", user="UADMIN", name="lora-del"
    )
    assert "Deleted LoRA `ink`" in deleted and not await lora_rows(db, TEAM)
    gone = await slash(
        http_bot, slack_emulator, "/atelier", "lora delete ink", user="UADMIN", name="lora-gone"
    )
    assert "This workspace has no LoRA named 'ink': it has none" in gone


async def slash_imagine(http_bot: str, emulator: SlackEmulator, text: str, team: str, channel: str) -> None:
    fields = slash_command(text, channel=channel, team=team, response_url=emulator.response_url())
    answer = await post_signed_form(http_bot, fields)
    assert answer.status == 200 and answer.seconds < 3


async def test_training_mistakes_are_explained_and_store_nothing(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    few = slack_emulator.add_file(dataset_zip(2), "few.zip", "application/zip")
    picture = slack_emulator.add_file(a_png(), "cat.png", "image/png")
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    for n, (text, expected) in enumerate(
        [
            (f"lora train ink zq <{few['permalink']}>", "a LoRA needs between 3 and 200 images (got 2)"),
            (f"lora train ink zq <{picture['permalink']}>", "cat.png is not a zip"),
            (f"lora train 'bad name' zq <{few['permalink']}>", "LoRA name 'bad name'"),
            ("lora train ink <https://example.com/x.zip>", "train needs a name, a trigger word and a link"),
            (f"lora train ink zq <{few['permalink']}> --steps many", "--steps needs a whole number"),
            ("lora fly", "Usage: `/atelier lora train"),
        ]
    ):
        answer = await slash(http_bot, slack_emulator, "/atelier", text, user="UADMIN", name=f"lora-bad-{n}")
        assert expected in answer, answer
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
    assert not await lora_rows(db, TEAM)


async def test_the_train_lora_shortcut_trains_on_the_images_of_a_message_for_admins_only(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    channel, ts = "CLORASHORT", "1700000400.000100"
    images = [slack_emulator.add_file(a_png(64, 64 + 8 * i), f"s{i}.png", "image/png") for i in range(3)]

    async def use_shortcut(user: str, message_files: list[dict], name: str) -> dict:
        shortcut = message_shortcut(
            "train_lora",
            {"ts": ts, "files": message_files},
            channel=channel,
            response_url=slack_emulator.response_url(name),
            user=user,
        )
        shortcut["team"]["id"] = shortcut["user"]["team_id"] = TEAM
        answer = await post_signed_form(http_bot, {"payload": json.dumps(shortcut)})
        assert answer.status == 200 and answer.seconds < 3
        return shortcut

    refused = await use_shortcut("U1", images, "short-lora-refused")
    reply = (await slack_emulator.wait_for(lambda: slack_emulator.responses("short-lora-refused")))[0]
    assert "Only this workspace's admins and owners" in reply.args["text"]
    assert not slack_emulator.api_calls("views.open", trigger_id=refused["trigger_id"])
    await use_shortcut("UADMIN", images[:2], "short-lora-few")
    reply = (await slack_emulator.wait_for(lambda: slack_emulator.responses("short-lora-few")))[0]
    assert "A LoRA needs at least 3 images; this message has 2" in reply.args["text"]

    shortcut = await use_shortcut("UADMIN", images, "short-lora")
    [opened] = await slack_emulator.wait_for(
        lambda: slack_emulator.api_calls("views.open", trigger_id=shortcut["trigger_id"])
    )
    view = opened.result["view"]
    bad = {"name": {"value": "no spaces!"}, "trigger": {"value": "zq"}, "steps": {"value": "0"}}
    answer = await post_signed_form(
        http_bot, {"payload": json.dumps(view_submission(view, bad, user="UADMIN", team=TEAM))}
    )
    assert set(json.loads(answer.text)["errors"]) == {"name", "steps"}
    good = {"name": {"value": "sketch"}, "trigger": {"value": "zq sketch"}, "steps": {"value": "2"}}
    answer = await post_signed_form(
        http_bot, {"payload": json.dumps(view_submission(view, good, user="UADMIN", team=TEAM))}
    )
    assert answer.status == 200 and answer.text == ""
    story = await trained(slack_emulator, channel, thread_ts=ts)
    assert "LoRA `sketch` is ready" in story.ready.args["text"]
    assert all(slack_emulator.downloads(f["id"]) for f in images)
    assert not slack_emulator.api_calls("chat.postEphemeral", channel=channel)  # a worker serves training
    [lora] = [row for row in await lora_rows(db, TEAM) if row["name"] == "sketch"]
    assert lora["status"] == "ready" and lora["steps"] == 2
