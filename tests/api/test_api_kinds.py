"""Each kind of job the API takes, run by the rig's real worker on the tiny models: image-to-image, the three
edits, upscaling (whose repeat is a cache hit: it has no seed), the safety filter on a flagged image, and the
catalogue routes (models, LoRAs)."""

from __future__ import annotations

import base64
import io
import textwrap

import aiohttp
from PIL import Image as PILImage

from bots.api.keys import create_key
from quotas.policy import tenant_for
from storage.lora_models import LoraModel, LoraStatus
from storage.models import Job
from tests.api.conftest import Rig, bearer, new_tenant, wait_for_job
from tests.support import run_atelier


def png(width: int, height: int, colour=(40, 120, 200), box: tuple | None = None) -> PILImage.Image:
    image = PILImage.new("RGB", (width, height), colour)
    if box is not None:
        image.paste((255, 255, 255), box)
    return image


def b64(image: PILImage.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def run(http: aiohttp.ClientSession, rig: Rig, key: str, path: str, body: dict) -> tuple[dict, list]:
    """Submit, follow to the end, and fetch every image: (the ended job, its images as PIL images)."""
    async with http.post(f"{rig.url}{path}", json=body, headers=bearer(key)) as response:
        assert response.status == 202, await response.text()
        job_id = (await response.json())["id"]
    ended = await wait_for_job(http, rig, key, job_id)
    assert ended["status"] == "succeeded", ended
    images = []
    for image in ended["images"]:
        async with http.get(f"{rig.url}{image['url']}", headers=bearer(key)) as response:
            assert response.status == 200
            images.append(PILImage.open(io.BytesIO(await response.read())))
    return ended, images


async def test_image_to_image_edits_and_upscales(
    rig: Rig, database: str, http: aiohttp.ClientSession
) -> None:
    _, key = await create_key(new_tenant())
    source = png(72, 48)
    ended, [varied] = await run(
        http,
        rig,
        key,
        "/v1/images",
        {"prompt": "a harbour", "image": b64(source), "strength": 0.5, "seed": 2, "steps": 2},
    )
    assert ended["kind"] == "vary" and varied.size == (72, 48)
    assert "image" not in ended["spec"]  # the input's blob key is the store's business

    # As `base64 photo.png` writes it (wrapped at 76 columns), and as a data: URL: the same input, so a hit.
    wrapped = "\n".join(textwrap.wrap(b64(source), 76))
    body = {"prompt": "a harbour", "image": wrapped, "strength": 0.5, "seed": 2, "steps": 2}
    async with http.post(f"{rig.url}/v1/images", json=body, headers=bearer(key)) as response:
        assert response.status == 200 and (await response.json())["id"] == ended["id"]
    body["image"] = "data:image/png;base64," + b64(source)
    async with http.post(f"{rig.url}/v1/images", json=body, headers=bearer(key)) as response:
        assert response.status == 200 and (await response.json())["id"] == ended["id"]

    mask = png(72, 48, (0, 0, 0), box=(20, 10, 50, 30))
    for mode, extra in (("insertion", {"prompt": "a red kite"}), ("removal", {})):
        body = {"mode": mode, "image": b64(source), "mask": b64(mask), "seed": 4, "steps": 2, **extra}
        ended, [edited] = await run(http, rig, key, "/v1/edits", body)
        assert ended["kind"] == "inpaint" and edited.size == (72, 48)
    body = {
        "mode": "outpaint",
        "image": b64(source),
        "extend": {"left": 16, "bottom": 8},
        "seed": 4,
        "steps": 2,
    }
    _, [extended] = await run(http, rig, key, "/v1/edits", body)
    assert extended.size == (72 + 16, 48 + 8)

    body = {"image": b64(png(64, 72)), "scale": 2}
    ended, [upscaled] = await run(http, rig, key, "/v1/upscales", body)
    assert ended["kind"] == "upscale" and upscaled.size == (128, 144)
    async with http.post(f"{rig.url}/v1/upscales", json=body, headers=bearer(key)) as response:
        assert response.status == 200 and response.headers["X-Atelier-Cache"] == "hit"
        assert (await response.json())["id"] == ended["id"]


async def test_a_flagged_image_is_withheld_until_the_tenant_turns_its_filter_off(
    rig: Rig, database: str, http: aiohttp.ClientSession
) -> None:
    tenant_ref = new_tenant()
    _, key = await create_key(tenant_ref)
    body = {
        "prompt": "a statue",
        "model": "tiny-strict",
        "seed": 3,
        "steps": 2,
    }  # its checker flags everything
    async with http.post(f"{rig.url}/v1/images", json=body, headers=bearer(key)) as response:
        job_id = (await response.json())["id"]
    ended = await wait_for_job(http, rig, key, job_id)
    [image] = ended["images"]
    assert image["flagged"] and image["withheld"]
    async with http.get(f"{rig.url}{image['url']}", headers=bearer(key)) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "image_withheld"

    off = run_atelier("admin", "safety", tenant_ref, "off", cwd=rig.root, env=rig.env)
    assert off.returncode == 0, off.stderr
    async with http.get(f"{rig.url}/v1/jobs/{job_id}", headers=bearer(key)) as response:
        [image] = (await response.json())["images"]
    assert image["flagged"] and not image["withheld"]
    async with http.get(f"{rig.url}{image['url']}", headers=bearer(key)) as response:
        assert response.status == 200
        flagged_png = await response.read()

    # An upscale of those pixels is withheld as well once the filter is back on: it cannot bring the flagged
    # picture out of hiding.
    body = {"image": base64.b64encode(flagged_png).decode(), "scale": 2}
    async with http.post(f"{rig.url}/v1/upscales", json=body, headers=bearer(key)) as response:
        upscale_id = (await response.json())["id"]
    assert (await wait_for_job(http, rig, key, upscale_id))["status"] == "succeeded"
    on = run_atelier("admin", "safety", tenant_ref, "on", cwd=rig.root, env=rig.env)
    assert on.returncode == 0, on.stderr
    async with http.get(f"{rig.url}/v1/jobs/{upscale_id}", headers=bearer(key)) as response:
        [bigger] = (await response.json())["images"]
    assert not bigger["flagged"] and bigger["withheld"]
    async with http.get(f"{rig.url}{bigger['url']}", headers=bearer(key)) as response:
        assert response.status == 403


async def test_models_and_each_tenants_own_loras(
    rig: Rig, database: str, http: aiohttp.ClientSession
) -> None:
    mine, theirs = new_tenant(), new_tenant()
    _, key = await create_key(mine)
    for ref, name in ((mine, "my-style"), (theirs, "their-style")):
        await LoraModel.create(
            tenant=await tenant_for(ref), name=name, family="sd15", base_model="tiny", trigger=f"{name} tok",
            status=LoraStatus.READY, weights_key=f"loras/{name}.safetensors", steps=10,
        )  # fmt: skip
    shared = rig.root / "data" / "loras"
    shared.mkdir(parents=True, exist_ok=True)
    (shared / "ink.safetensors").write_bytes(b"not read by the listing")

    async with http.get(f"{rig.url}/v1/loras", headers=bearer(key)) as response:
        loras = (await response.json())["loras"]
    assert {(x["name"], x["scope"]) for x in loras} == {("my-style", "tenant"), ("ink", "shared")}

    async with http.get(f"{rig.url}/v1/models", headers=bearer(key)) as response:
        models = {m["name"]: m for m in (await response.json())["models"]}
    assert models["tiny"]["role"] == "txt2img" and models["tiny"]["max_steps"] == 50
    assert (
        models["sdxl"]["tiny_for"] == "tiny-sdxl"
    )  # the rig runs tiny models: a real name runs its tiny one
    assert models["tiny-inpaint"]["role"] == "inpaint"
    assert {m["role"] for m in models.values()} == {"txt2img", "inpaint", "upscale", "face"}


async def test_a_size_above_the_native_one_goes_through_hires_fix_unless_hires_is_1(
    rig: Rig, database: str, http: aiohttp.ClientSession
) -> None:
    _, key = await create_key(new_tenant())
    body = {"prompt": "a lighthouse", "model": "tiny", "width": 128, "height": 128, "steps": 2, "seed": 8}
    ended, [image] = await run(http, rig, key, "/v1/images", body)
    assert image.size == (128, 128)  # tiny's native size is 64²: the first pass ran there
    spec = (await Job.get(id=ended["id"])).spec
    assert (spec["kind"], spec["first_width"], spec["first_height"]) == ("imagine", 64, 64)

    ended, [direct] = await run(http, rig, key, "/v1/images", {**body, "hires": 1})
    assert direct.size == (128, 128)
    spec = (await Job.get(id=ended["id"])).spec
    assert (spec["hires"], spec["first_width"]) == (1.0, None)
    assert direct.tobytes() != image.tobytes()
