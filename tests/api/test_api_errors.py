"""Bad input and refused requests, each answered with its stable code, status and field in the one error shape
(`{"error": {"code", "message", "field"}}`), and nothing queued or charged: the tenant has no job, reservation or
ledger entry afterwards. Through the real `atelier api` process of the rig."""

from __future__ import annotations

import base64
import io

import aiohttp
import pytest
from PIL import Image as PILImage

from bots.api.app import MAX_BODY_BYTES
from bots.api.keys import create_key as make_key
from jobs.inputs import MAX_INPUT_BYTES
from quotas.policy import tenant_for
from storage.models import Job
from storage.quota_models import QuotaLedger, QuotaReservation
from tests.api.conftest import Rig, bearer, create_key, new_tenant
from tests.support import run_atelier


def png_b64(width: int, height: int) -> str:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


OK = {"prompt": "a boat", "model": "tiny", "steps": 2, "seed": 3}
IMAGES = "/v1/images"
CASES = [
    # (path, body, status, code, field)
    (IMAGES, {**OK, "colour": "red"}, 422, "unknown_field", "colour"),
    (IMAGES, {**OK, "loras": [{"name": "ink", "strength": 1}]}, 422, "unknown_field", "loras.0.strength"),
    (IMAGES, {"model": "tiny"}, 422, "missing_field", "prompt"),
    (IMAGES, {**OK, "steps": 0}, 422, "out_of_range", "steps"),
    (IMAGES, {**OK, "steps": 51}, 422, "out_of_range", "steps"),  # past tiny's own max_steps (50)
    (IMAGES, {**OK, "seed": 2**32}, 422, "out_of_range", "seed"),
    (IMAGES, {**OK, "seed": -1}, 422, "out_of_range", "seed"),
    (IMAGES, {**OK, "count": 5}, 422, "out_of_range", "count"),  # tiny makes at most 4
    (IMAGES, {**OK, "guidance": 31.0}, 422, "out_of_range", "guidance"),
    (IMAGES, {**OK, "prompt": "x" * 1001}, 422, "out_of_range", "prompt"),
    (IMAGES, {**OK, "width": 512, "height": 520}, 422, "out_of_range", "height"),
    (IMAGES, {**OK, "seed": "3"}, 422, "invalid_value", "seed"),  # no coercion of strings
    (IMAGES, {**OK, "count": True}, 422, "invalid_value", "count"),
    (IMAGES, {**OK, "width": 64}, 422, "invalid_value", "height"),
    (IMAGES, {**OK, "width": 68, "height": 64}, 422, "invalid_value", "width"),
    (IMAGES, {**OK, "prompt": "a\x00b"}, 422, "invalid_value", "prompt"),
    (IMAGES, {**OK, "strength": 0.5}, 422, "invalid_value", "strength"),
    (IMAGES, {**OK, "hires": 1.5}, 422, "invalid_value", "hires"),  # only 1 (off): ask for the size
    (IMAGES, {**OK, "hires": 1, "image": png_b64(64, 64)}, 422, "invalid_value", "hires"),
    (IMAGES, {**OK, "model": "no-such-model"}, 422, "unknown_model", "model"),
    (IMAGES, {**OK, "model": "tiny-inpaint"}, 422, "unknown_model", "model"),  # not a text-to-image model
    (IMAGES, {**OK, "loras": [{"name": "nobody-has-this"}]}, 422, "unknown_lora", "loras"),
    (IMAGES, {**OK, "loras": [{"name": "ink", "weight": 3}]}, 422, "out_of_range", "loras.0.weight"),
    (IMAGES, {**OK, "image": "not base64 at all!"}, 422, "invalid_image", "image"),
    (IMAGES, {**OK, "image": base64.b64encode(b"GIF89a but not").decode()}, 422, "invalid_image", "image"),
    (IMAGES, {**OK, "image": png_b64(8200, 600)}, 422, "image_too_large", "image"),
    (IMAGES, {**OK, "webhook_url": "ftp://example.com/x"}, 422, "invalid_webhook_url", "webhook_url"),
    ("/v1/edits", {"mode": "erase", "image": png_b64(64, 64)}, 422, "invalid_value", "mode"),
    ("/v1/edits", {"mode": "insertion", "image": png_b64(64, 64)}, 422, "invalid_value", "mask"),
    ("/v1/edits", {"mode": "removal", "image": png_b64(64, 64), "mask": "%%"}, 422, "invalid_image", "mask"),
    ("/v1/upscales", {"image": png_b64(64, 64), "scale": 3}, 422, "invalid_value", "scale"),
    ("/v1/upscales", {"image": png_b64(64, 64), "fidelity": 0.5}, 422, "invalid_value", "fidelity"),
]


async def assert_nothing_charged(tenant_ref: str) -> None:
    tenant = await tenant_for(tenant_ref)
    assert await Job.filter(tenant_id=tenant.id).count() == 0
    assert await QuotaReservation.filter(tenant_id=tenant.id).count() == 0
    assert await QuotaLedger.filter(tenant_id=tenant.id).count() == 0


async def expect(response: aiohttp.ClientResponse, status: int, code: str, field: str | None = None) -> dict:
    body = await response.json()
    assert response.status == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["field"] == field, body
    assert body["error"]["message"] and "\n" not in body["error"]["message"]
    return body


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "field"), CASES, ids=[f"{c[3]}-{c[4]}" for c in CASES]
)
async def test_bad_requests_get_their_code_and_field_and_cost_nothing(
    rig: Rig,
    database: str,
    http: aiohttp.ClientSession,
    path: str,
    body: dict,
    status: int,
    code: str,
    field: str,
) -> None:
    tenant_ref = new_tenant()
    _, key = await make_key(tenant_ref)
    async with http.post(f"{rig.url}{path}", json=body, headers=bearer(key)) as response:
        await expect(response, status, code, field)
    await assert_nothing_charged(tenant_ref)


async def test_bodies_that_are_not_json_objects_or_too_large(
    rig: Rig, database: str, http: aiohttp.ClientSession
) -> None:
    tenant_ref = new_tenant()
    _, key = await make_key(tenant_ref)
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe", b""):
        async with http.post(f"{rig.url}{IMAGES}", data=raw, headers=bearer(key)) as response:
            await expect(response, 400, "malformed_json")
    # An image over the input limit is refused by its size before it is decoded...
    huge = "A" * (MAX_INPUT_BYTES * 4 // 3 + 100)
    async with http.post(f"{rig.url}{IMAGES}", json={**OK, "image": huge}, headers=bearer(key)) as response:
        await expect(response, 413, "image_too_large", "image")
    # ...and a body over the server's limit while it is read.
    async with http.post(
        f"{rig.url}{IMAGES}", data=b" " * (MAX_BODY_BYTES + 1), headers=bearer(key)
    ) as response:
        await expect(response, 413, "body_too_large")
    headers = bearer(key) | {"Idempotency-Key": "k" * 201}
    async with http.post(f"{rig.url}{IMAGES}", json=OK, headers=headers) as response:
        await expect(response, 400, "invalid_idempotency_key")
    await assert_nothing_charged(tenant_ref)


async def test_unknown_paths_methods_jobs_and_images(
    rig: Rig, database: str, http: aiohttp.ClientSession
) -> None:
    _, key = await make_key(new_tenant())
    async with http.get(f"{rig.url}/v1/nothing-here", headers=bearer(key)) as response:
        await expect(response, 404, "not_found")
    async with http.put(f"{rig.url}/v1/images", headers=bearer(key)) as response:
        await expect(response, 405, "method_not_allowed")
    async with http.get(f"{rig.url}/v1/jobs/jdoesnotexist", headers=bearer(key)) as response:
        await expect(response, 404, "job_not_found")
    for image_id in ("999999999", "abc", "1e3"):
        async with http.get(f"{rig.url}/v1/images/{image_id}", headers=bearer(key)) as response:
            await expect(response, 404, "image_not_found")


async def test_missing_unknown_and_revoked_keys_get_401(
    rig: Rig, database: str, http: aiohttp.ClientSession
) -> None:
    tenant_ref = new_tenant()
    key = create_key(rig, tenant_ref)  # through the CLI, as an operator does
    listing = run_atelier("admin", "apikey", "list", tenant_ref, cwd=rig.root, env=rig.env)
    assert listing.returncode == 0 and key[:12] in listing.stdout and key not in listing.stdout
    for headers, code in [
        ({}, "missing_key"),
        ({"Authorization": f"Basic {key}"}, "invalid_key"),
        ({"Authorization": "Bearer "}, "invalid_key"),
        ({"Authorization": "Bearer hunter2"}, "invalid_key"),
        (bearer(key[:-1] + ("A" if key[-1] != "A" else "B")), "invalid_key"),
    ]:
        async with http.post(f"{rig.url}{IMAGES}", json=OK, headers=headers) as response:
            await expect(response, 401, code)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    async with http.get(f"{rig.url}/v1/models", headers=bearer(key)) as response:
        assert response.status == 200
    revoked = run_atelier("admin", "apikey", "revoke", tenant_ref, key[:12], cwd=rig.root, env=rig.env)
    assert revoked.returncode == 0, revoked.stderr
    async with http.post(f"{rig.url}{IMAGES}", json=OK, headers=bearer(key)) as response:
        body = await expect(response, 401, "key_revoked")
    assert "revoked" in body["error"]["message"]
    async with http.get(f"{rig.url}/v1/openapi.json") as response:
        assert response.status == 200  # the document needs no key
    await assert_nothing_charged(tenant_ref)


async def test_pause_ban_and_quota_refusals(rig: Rig, database: str, http: aiohttp.ClientSession) -> None:
    """The tenant's admission rules apply to the API as to the chat bots: a paused tenant, a banned key's user
    (`apikey:<id>`) and a reached limit are refused before anything is queued or charged."""
    tenant_ref = new_tenant()
    record, key = await make_key(tenant_ref)

    def admin(*args: str) -> None:
        result = run_atelier("admin", *args, cwd=rig.root, env=rig.env)
        assert result.returncode == 0, result.stderr

    admin("pause", tenant_ref)
    async with http.post(f"{rig.url}{IMAGES}", json=OK, headers=bearer(key)) as response:
        await expect(response, 403, "tenant_paused")
    admin("resume", tenant_ref)
    admin("ban", tenant_ref, f"apikey:{record.id}")
    async with http.post(f"{rig.url}{IMAGES}", json=OK, headers=bearer(key)) as response:
        await expect(response, 403, "key_banned")
    admin("unban", tenant_ref, f"apikey:{record.id}")
    admin("quota", tenant_ref, "--images-per-day", "0")
    async with http.post(f"{rig.url}{IMAGES}", json=OK, headers=bearer(key)) as response:
        body = await expect(response, 429, "quota_exceeded")
        assert 1 <= int(response.headers["Retry-After"]) <= 24 * 3600 + 60  # when the day's limit resets
    assert "Limit reached" in body["error"]["message"]
    await assert_nothing_charged(tenant_ref)
