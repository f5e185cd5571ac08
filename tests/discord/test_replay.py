"""`/replay image:` (issue 17): an image Atelier posted, attached again, is made again for the server asking,
with the same pixels; an image without a recipe, or with an edited one, or naming a model this installation
lacks, is refused ephemerally and nothing is enqueued."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image as PILImage

from engine.output import png_bytes
from jobs import provenance, recipe
from jobs.signing import load_credentials
from tests.discord.emulator import Upload
from tests.discord.helpers import followups, job_id_of, job_row, results_of, wait_status
from tests.discord.stack import Stack
from tests.provenance.support import edit_recipe
from tests.support import replayed_content

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")


async def _posted_images(stack: Stack, prompt: str) -> list[bytes]:
    emulator = stack.emulator
    command = await emulator.slash("imagine", {"prompt": prompt, "model": "tiny"})
    await emulator.wait_response(command)
    await wait_status(emulator, command.original_message_id, "✅ Done")
    (posted,) = results_of(emulator, command.original_message_id, job_id_of(command))
    return [a.data for a in posted.attachments]


async def test_replay_of_a_posted_image_makes_the_same_pixels_for_this_server(stack: Stack) -> None:
    emulator = stack.emulator
    original = (await _posted_images(stack, "a lighthouse at dusk --seed 21 --steps 3 --n 2 --chaos 30"))[1]

    command = await emulator.slash("replay", {"image": Upload("lighthouse.png", original)})
    await emulator.wait_response(command)
    assert command.callback_type == 5 and command.callback_at - command.dispatched_at < 3.0  # type: ignore[operator]
    await wait_status(emulator, command.original_message_id, "✅ Done")
    (posted,) = results_of(emulator, command.original_message_id, job_id_of(command))
    [again] = [a.data for a in posted.attachments]
    assert replayed_content(again) == replayed_content(original)

    row = await job_row(stack, job_id_of(command))
    spec = json.loads(row["spec"])
    assert row["kind"] == "imagine" and spec["count"] == 1 and spec["seed"] == 22
    tenant = await stack.db.fetchrow("SELECT external_id FROM tenants WHERE id = $1", row["tenant_id"])
    assert tenant["external_id"] == str(emulator.guild_id)  # the server asking runs it, on its quota


def _unknown_model(png: bytes, keys: Path) -> bytes:
    """A validly signed image whose recipe names a model this installation does not have (re-signed by the
    test with a key of its own, as another installation would have)."""
    found = json.loads(recipe.read_text(png))
    found["spec"]["model"] = "flux-dev-9000"
    text = json.dumps(found)
    credentials = load_credentials(key_file=None, cert_file=None, trust_file=None, local_dir=keys)
    bare = png_bytes(PILImage.open(io.BytesIO(png)), {recipe.RECIPE_KEY: text})
    return provenance.sign_png(bare, text, credentials, "elsewhere.png")


async def test_replay_refuses_bad_images_ephemerally_and_enqueues_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    emulator = stack.emulator
    [original] = await _posted_images(stack, "a windmill --seed 4 --steps 2")
    cases = [
        (png_bytes(PILImage.new("RGB", (64, 64), "navy")), "has no Atelier recipe"),
        (
            edit_recipe(original, lambda r: r | {"spec": r["spec"] | {"prompt": "a burning windmill"}}),
            "changed after signing",
        ),
        (_unknown_model(original, tmp_path / "keys"), "model 'flux-dev-9000' is not installed here"),
    ]
    for data, expected in cases:
        interaction = await emulator.slash("replay", {"image": Upload("in.png", data)})
        await emulator.wait_response(interaction)
        found = await emulator.wait_until(
            lambda i=interaction, e=expected: [m for m in followups(emulator, i) if e in m.content],
            15,
            f"the refusal naming {expected!r}",
        )
        assert found[0].flags & 64  # ephemeral: only the member who asked sees it
        assert emulator.messages[interaction.original_message_id].deleted  # the public "thinking…" withdrawn
        # The refusal comes from building the spec, which precedes any record or enqueue.
        assert await job_row(stack, job_id_of(interaction)) is None
