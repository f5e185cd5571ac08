"""The Slack app's pure parts, without processes: coalescing, button ids, Block Kit, encoding, configuration."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image as PILImage

from atelier.settings import Settings
from bots.commands import CommandError
from bots.slack import blocks, guide, ids, inpaint, replay_shortcut, train_shortcut
from bots.slack.client import web_client
from bots.slack.coalesce import CoalescedEdits
from bots.slack.config import SlackConfig
from bots.slack.guided import wants_guidance
from bots.slack.imagine import imagine_from_text
from bots.slack.replier import encode_for_slack
from bots.slack.shortcuts import SHORTCUTS
from engine.registry import Registry
from jobs.editing import LOOP_ACTIONS
from tests.support import atelier_env


class Recorder:
    """The `send` of a CoalescedEdits: records what was sent and when; can be told to fail or to be slow."""

    def __init__(self, fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.sent: list[tuple[float, dict, bool]] = []
        self.fail_first, self.delay_s = fail_first, delay_s

    async def __call__(self, content: dict, final: bool) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("platform said no")
        self.sent.append((time.monotonic(), content, final))


async def test_coalesced_edits_send_the_first_at_once_then_only_the_latest_per_interval() -> None:
    send = Recorder()
    edits = CoalescedEdits(send, interval_s=0.3)
    started = time.monotonic()
    for step in range(1, 21):
        edits.show({"step": step})  # never waits, whatever the platform's rate
        await asyncio.sleep(0.01)
    assert time.monotonic() - started < 0.3 + 0.1
    await edits.wait()
    assert [c["step"] for _, c, _ in send.sent] == [1, 20]
    assert send.sent[1][0] - send.sent[0][0] >= 0.3


async def test_coalesced_edits_survive_a_failed_edit_and_stop_after_the_final_one() -> None:
    send = Recorder(fail_first=1)
    edits = CoalescedEdits(send, interval_s=0.05)
    edits.show({"step": 1})
    await edits.wait()
    assert send.sent == []  # the failed edit was skipped, not retried
    edits.show({"step": 2})
    edits.show({"done": True}, final=True)
    edits.show({"step": 3})  # a late progress frame after the final state
    await edits.wait()
    assert [(c, final) for _, c, final in send.sent] == [({"done": True}, True)]
    assert edits.closed


async def test_coalesced_edits_leave_the_whole_interval_after_a_slow_edit() -> None:
    send = Recorder(delay_s=0.2)  # e.g. a 429 retried after Retry-After
    edits = CoalescedEdits(send, interval_s=0.3)
    edits.show({"step": 1})
    await asyncio.sleep(0.05)
    edits.show({"step": 2})
    await edits.wait()
    assert [c["step"] for _, c, _ in send.sent] == [1, 2]
    assert send.sent[1][0] - send.sent[0][0] >= 0.3 + 0.2 - 0.01


def test_action_ids_round_trip_and_reject_foreign_ones() -> None:
    ref = ids.ActionRef("upscale", "j0123456789abcdef0123", 3)
    assert ids.decode(ref.encode()) == ref
    assert ids.matcher("upscale", "reroll").match(ref.encode())
    assert not ids.matcher("reroll").match(ref.encode())
    for foreign in ("upscale:x:1", "delete:j01:0", "upscale:j01", "upscale:j01:-1"):
        with pytest.raises(ValueError, match="not an Atelier action id"):
            ids.decode(foreign)
    with pytest.raises(ValueError, match="unknown action"):
        ids.matcher("explode")


def test_result_buttons_are_unique_and_carry_job_and_index() -> None:
    spec = {
        "prompt": "a <@U1> & <!channel> fox",
        "model": "tiny",
        "width": 64,
        "height": 64,
        "steps": 4,
        "seed": 9,
    }
    images = [_Image(i, 9 + i) for i in range(4)]
    message = blocks.result_message("j" + "a" * 20, {**spec, "count": 4}, "U1", images)
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    codes = [b["action_id"] for b in buttons]
    assert len(codes) == len(set(codes)) == 4 + 4 + 1 + 4
    assert all(
        b["value"] == b["action_id"] and ids.decode(b["action_id"]).job_id == "j" + "a" * 20 for b in buttons
    )
    assert {ids.decode(c).index for c in codes if c.startswith("upscale:")} == {0, 1, 2, 3}
    # The prompt cannot mention or notify anyone: it is escaped.
    assert "&lt;@U1&gt; &amp; &lt;!channel&gt;" in message["text"] and "<!channel>" not in str(
        message["blocks"]
    )


def test_status_shows_progress_and_only_running_states_can_be_cancelled() -> None:
    spec = {"prompt": "a fox", "model": "tiny", "width": 64, "height": 64, "steps": 10, "seed": 1}
    running = blocks.progress_status("j01", spec, "U1", 3, 10)
    assert "30%" in running["text"] and "step 3/10" in running["text"]
    assert any(b["type"] == "actions" for b in running["blocks"])
    for final in (
        blocks.done_status("j01", spec, "U1", 1),
        blocks.failed_status("j01", spec, "U1", "out of memory"),
        blocks.cancelled_status("j01", spec, "U1", "Cancelled by <@U2>."),
    ):
        assert not any(b["type"] == "actions" for b in final["blocks"])


def test_big_results_go_as_jpeg_small_ones_as_the_png_itself() -> None:
    image = PILImage.effect_noise((96, 64), 60).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    png = out.getvalue()
    assert encode_for_slack(png, limit_bytes=len(png)) == (png, "png")
    jpeg, ext = encode_for_slack(png, limit_bytes=len(png) - 1)
    with PILImage.open(io.BytesIO(jpeg)) as decoded:
        assert ext == "jpg" and decoded.format == "JPEG" and decoded.size == (96, 64)


def test_config_requires_a_signing_secret_in_http_mode_and_fixes_the_base_slash() -> None:
    with pytest.raises(ValueError, match="ATELIER_SLACK_SIGNING_SECRET"):
        SlackConfig(bot_token="xoxb-1")
    assert SlackConfig(bot_token="xoxb-1", app_token="xapp-1").socket_mode
    assert SlackConfig(
        bot_token="xoxb-1", signing_secret="s", api_base="https://slack-gov.com/api"
    ).api_base == ("https://slack-gov.com/api/")
    with pytest.raises(ValueError, match="explode"):
        SlackConfig(bot_token="xoxb-1", app_token="xapp-1", reactions={"boom": "explode"})


def test_settings_read_slack_secrets_from_files_and_admins_as_a_list(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("xoxb-from-file\n")
    monkeypatch.setenv("ATELIER_SLACK_BOT_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("ATELIER_SLACK_ADMINS", "U1, U2")
    monkeypatch.setenv("ATELIER_SLACK_REACTIONS", '{"eyes": "upscale"}')
    settings = Settings(_env_file=None)
    assert settings.secret("slack_bot_token") == "xoxb-from-file"
    assert "xoxb" not in repr(settings)
    assert settings.slack_admins == ["U1", "U2"]
    assert settings.slack_reactions == {"eyes": "upscale"}
    assert settings.slack_api_base == "https://slack.com/api/" and settings.slack_port == 3000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "describe the image you want"),
        ("a fox --sharpness 2", "unknown flag --sharpness"),
        ("a fox --model nope", "nope"),
        ("--seed 3", "the prompt is only flags"),
        ("a fox --size 100x64", "multiple of 8"),
        ("a fox --lora pixel:0.8", "LoRAs are not available here"),
        ("a fox --control canny", "--control works with the /imagine command, not in a mention"),
        ("a fox --sw 0.5", "--sw works with the /imagine command"),
    ],
)
def test_imagine_text_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        imagine_from_text(Registry.load(None), text, tiny=True)


def test_imagine_text_takes_discords_flags() -> None:
    spec = imagine_from_text(
        Registry.load(None), "a fox in snow --ar 3:2 --seed 7 --steps 5 --n 2 --no blur", tiny=True
    )
    assert (spec.prompt, spec.model) == ("a fox in snow", "tiny")
    assert spec.width * 2 == spec.height * 3  # 3:2 at the model's pixel count
    assert (spec.seed, spec.steps, spec.count, spec.negative) == (7, 5, 2, "blur")


def test_imagine_text_above_native_size_takes_the_hires_fix_unless_hires_1() -> None:
    registry = Registry.load(None)
    spec = imagine_from_text(registry, "a fox --size 128x128", tiny=True)
    assert (spec.width, spec.height, spec.first_width, spec.first_height) == (128, 128, 64, 64)
    assert not wants_guidance("a fox --size 128x128 --hires 1")  # off: a plain /imagine, LoRAs and all
    direct = imagine_from_text(registry, "a fox --size 128x128 --hires 1", tiny=True)
    assert (direct.width, direct.height, direct.first_width, direct.hires) == (128, 128, None, 1.0)
    assert wants_guidance("a fox --hires 1.5") and wants_guidance("a fox --hires")  # a scale is guided
    with pytest.raises(CommandError, match="--hires works with the /imagine command, not in a mention"):
        imagine_from_text(registry, "a fox --hires 1.5", tiny=True)  # a scale: guided_request's


def test_atelier_slack_without_a_signing_secret_in_http_mode_exits_with_the_reason(tmp_path) -> None:
    env = atelier_env({"ATELIER_SLACK_BOT_TOKEN": "xoxb-1"})
    result = subprocess.run(
        [sys.executable, "-m", "atelier", "slack"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "ATELIER_SLACK_SIGNING_SECRET" in result.stderr and "ATELIER_SLACK_APP_TOKEN" in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was started


class _Image:
    def __init__(self, index: int, seed: int) -> None:
        self.index, self.seed, self.width, self.height = index, seed, 64, 64


def test_the_manifest_asks_for_what_the_app_uses_and_nothing_it_does_not_handle() -> None:
    manifest = yaml.safe_load((Path(__file__).parents[2] / "slack-manifest.yml").read_text())
    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    # every command and shortcut Slack will send has a listener
    assert commands == {"/imagine", "/upscale", "/inpaint", "/atelier", "/blend", "/describe"}
    shortcuts = {(s["type"], s["callback_id"]) for s in manifest["features"]["shortcuts"]}
    assert shortcuts == {
        ("message", callback_id)
        for callback_id in [*SHORTCUTS, inpaint.SHORTCUT, train_shortcut.SHORTCUT, replay_shortcut.SHORTCUT]
    }
    settings = manifest["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == {"app_mention", "reaction_added"}
    assert settings["interactivity"]["is_enabled"] and settings["socket_mode_enabled"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes == {
        "commands",
        "chat:write",
        "files:write",
        "files:read",
        "app_mentions:read",
        "reactions:read",
        "users:read",
        "channels:history",  # conversations.replies: a reacted-to message's files (bots.slack.reactions)
        "groups:history",
        "im:write",  # conversations.open: private mode's direct messages (bots.slack.submit)
    }
    assert scopes == set(guide.SCOPES)  # what `atelier slack --help` lists


async def test_the_emulator_takes_web_api_arguments_every_way_slack_sdk_sends_them(slack_emulator) -> None:
    client = web_client("xoxb-unit", slack_emulator.api_base)
    posted = await client.chat_postMessage(channel="CUNITS", text="json body")  # JSON
    assert posted["ts"]
    await client.api_call("chat.update", data={"channel": "CUNITS", "ts": posted["ts"], "text": "form body"})
    await client.api_call(
        "reactions.add", params={"channel": "CUNITS", "timestamp": posted["ts"], "name": "mag"}
    )
    info = await client.users_info(user="UADMIN")  # GET with a query string
    assert info["user"]["is_admin"] is True
    assert slack_emulator.messages[("CUNITS", posted["ts"])]["text"] == "form body"
    assert [c.token for c in slack_emulator.api_calls(channel="CUNITS")] == ["xoxb-unit"] * 3
    slack_emulator.fail_next("chat.update", status=429, retry_after=1, when={"channel": "CUNITS"})
    started = time.monotonic()
    await client.chat_update(channel="CUNITS", ts=posted["ts"], text="after a 429")
    assert time.monotonic() - started >= 1  # Retry-After respected by the client the app and worker use
    assert len(slack_emulator.api_calls("chat.update", failed=True, channel="CUNITS")) == 1


def test_blocks_describe_each_kind_and_offer_the_buttons_that_make_sense() -> None:
    upscale = {"kind": "upscale", "image": "k", "width": 64, "height": 80, "model": "tiny-x4", "scale": 4}
    assert blocks.describe(upscale) == "tiny-x4 · ×4 · 64×80 → 256×320"
    assert blocks.title(upscale) == "Upscale ×4"
    codes = [
        e["action_id"]
        for b in blocks.result_message("j0a", upscale, "U1", [_Image(0, 0)])["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    # A single upscaled image: the editing loop (jobs.editing), faces, and no reroll of an unseeded job.
    assert codes == [*(f"{action.name}:j0a:0" for action in LOOP_ACTIONS), "faces:j0a:0"]
    vary = {"kind": "vary", "prompt": "a fox", "strength": 0.6, "model": "tiny", "steps": 3, "seed": 2}
    assert "strength 0.6" in blocks.describe(vary) and blocks.title(vary) == "a fox"
    assert "Making variations" in blocks.progress_status("j0a", vary, "U1", 1, 3)["text"]


def test_admin_chat_arguments_parse_like_the_cli_and_explain_mistakes() -> None:
    from quotas.admin_args import ChatArgumentError, parse_chat

    args = parse_chat("/atelier", "quota \u2014images-per-day 3 --clear concurrent-jobs")
    assert (args.admin_command, args.images_per_day, args.clear) == ("quota", "3", ["concurrent-jobs"])
    assert parse_chat("/atelier", "ban <@U12|ana> --reason 'spam bot'").user == "U12"
    for text, expected in (("", "usage: /atelier"), ("tier a b", "unrecognized arguments: b")):
        with pytest.raises(ChatArgumentError, match=expected):
            parse_chat("/atelier", text)


def test_the_inpaint_modal_offers_the_engines_modes_and_inpaint_text_parses_links_flags_and_prompt() -> None:
    from bots.slack.inpaint_command import parse_inpaint
    from engine.edit_requests import MODES

    assert tuple(value for value, _ in inpaint.MODE_LABELS) == MODES
    assert inpaint.default_extend(64) == inpaint.Extend(left=16, right=16)
    assert inpaint.default_extend(20) == inpaint.Extend(left=8, right=8)
    link, mode, own, prompt, options = parse_inpaint(
        "<https://x.slack.com/files/U1/F1/a.png> Insertion --mask <https://x.slack.com/files/U1/F2/m.png> "
        "a red ball --seed 3 --no blur"
    )
    assert (link, mode, prompt) == ("<https://x.slack.com/files/U1/F1/a.png>", "insertion", "a red ball")
    assert own == {"--mask": "<https://x.slack.com/files/U1/F2/m.png>"}
    assert options == {"seed": 3, "negative": "blur"}
    with pytest.raises(CommandError, match="--extend needs a value"):
        parse_inpaint("<link> outpaint --extend")
    with pytest.raises(CommandError, match="does not take lora"):
        parse_inpaint("<link> outpaint --lora ink:1")


def test_a_workspaces_chosen_reactions_replace_the_configured_ones_for_their_action() -> None:
    from bots.slack.reactions import reaction_actions
    from storage.preferences import Preferences

    configured = {"mag": "upscale", "mag_right": "upscale", "sparkles": "faces"}
    assert reaction_actions(configured, Preferences()) == configured
    chosen = Preferences(upscale_emoji="frame_with_picture")
    assert reaction_actions(configured, chosen) == {"frame_with_picture": "upscale", "sparkles": "faces"}
    both = Preferences(upscale_emoji="eyes", faces_emoji="star")
    assert reaction_actions(configured, both) == {"eyes": "upscale", "star": "faces"}


async def test_a_trainings_status_shows_the_latest_loss_from_its_event_stream() -> None:
    from redis.asyncio import Redis

    from bots.slack.replier import latest_loss
    from jobs import events
    from tests.slack.conftest import REDIS_URL

    redis = Redis.from_url(REDIS_URL)
    job_id = f"jtrainunit{time.time_ns():x}"
    try:
        assert await latest_loss(redis, job_id) is None
        await events.publish(redis, job_id, "progress", step=1, total=8)
        assert await latest_loss(redis, job_id) is None  # no loss reported yet
        for step, loss in ((1, 0.5), (4, 0.25)):
            await events.publish(redis, job_id, "training", step=step, total=8, loss=loss)
            await events.publish(redis, job_id, "progress", step=step + 1, total=8)
        assert await latest_loss(redis, job_id) == 0.25
    finally:
        await redis.delete(events.stream_key(job_id))
        await redis.aclose()
    spec = {
        "kind": "train_lora",
        "name": "ink",
        "trigger": "zq <ink>",
        "model": "tiny",
        "steps": 8,
        "rank": 4,
    }
    running = blocks.progress_status("j1", spec, "U1", 5, 8, 0.25)["text"]
    assert running.startswith("LoRA ink: :art: Training") and "step 5/8 · loss 0.2500" in running
    done = blocks.trained_status("j1", spec, "U1", 0.125)["text"]
    assert "Done: trained 8 steps, final loss 0.1250" in done
    ready = blocks.lora_ready_message(spec, "U1", 2)
    assert ready["text"] == "<@U1>: LoRA `ink` is ready: use `--lora ink:0.8`"
    assert "trigger: zq &lt;ink&gt;" in json.dumps(ready["blocks"])  # user text stays literal


def test_withheld_images_are_counted_and_get_no_buttons() -> None:
    spec = {"kind": "imagine", "prompt": "a fox", "model": "tiny", "width": 64, "height": 64, "steps": 2}
    spec |= {"count": 2, "seed": 7}
    some = blocks.result_message("jab", spec, "U1", [_Image(1, 8)], withheld=1)
    codes = [e["action_id"] for b in some["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert codes == ["upscale:jab:1", "variations:jab:1", "reroll:jab:0", "faces:jab:1"]
    assert "1 image withheld" in str(some["blocks"]) and "seeds 8" in str(some["blocks"])
    assert "2 images in this thread; 1 withheld" in blocks.done_status("jab", spec, "U1", 2, 1)["text"]
    assert (
        "Done: 2 images withheld by the safety filter" in blocks.done_status("jab", spec, "U1", 0, 2)["text"]
    )
    assert "withheld" not in blocks.done_status("jab", spec, "U1", 2)["text"]


async def test_an_admin_hears_when_no_worker_serves_the_training_queue() -> None:
    from redis.asyncio import Redis

    from bots.slack.training import unserved_note
    from jobs.heartbeat import heartbeat_key
    from tests.slack.conftest import REDIS_URL

    redis = Redis.from_url(REDIS_URL)
    queue = f"atelier:train:unit{time.time_ns():x}"
    try:
        assert "No worker serves the training queue right now" in await unserved_note(redis, queue)
        await redis.set(heartbeat_key(queue, "w1"), "host:1", ex=30)
        assert await unserved_note(redis, queue) == ""
    finally:
        await redis.delete(heartbeat_key(queue, "w1"))
        await redis.aclose()
