"""`atelier admin apikey create|list|revoke` as an operator runs it: what each prints, that only a hash is
stored, and the refusals (a bad tenant, an unknown key) as one line with exit status 2."""

from __future__ import annotations

import hashlib

from quotas.policy import tenant_for
from storage.api_models import ApiKey
from tests.api.conftest import Rig, new_tenant
from tests.support import run_atelier


async def test_create_prints_the_secret_then_the_key_last_and_stores_only_its_hash(
    rig: Rig, database: str
) -> None:
    tenant_ref = new_tenant()
    created = run_atelier(
        "admin", "apikey", "create", tenant_ref, "--name", "farm", cwd=rig.root, env=rig.env
    )
    assert created.returncode == 0, created.stderr
    lines = created.stdout.strip().splitlines()
    key = lines[-1]
    assert key.startswith("atl_") and len(key) > 40
    [secret_line] = [line for line in lines if line.startswith("webhook signing secret: ")]
    secret = secret_line.removeprefix("webhook signing secret: ")

    [record] = await ApiKey.filter(tenant=await tenant_for(tenant_ref))
    assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert record.prefix == key[:12] and record.name == "farm" and record.webhook_secret == secret
    assert key not in str(await ApiKey.filter(id=record.id).values())  # the key itself is nowhere

    second = run_atelier("admin", "apikey", "create", tenant_ref, cwd=rig.root, env=rig.env)
    assert second.stdout.strip().splitlines()[-1] != key
    listing = run_atelier("admin", "apikey", "list", tenant_ref, cwd=rig.root, env=rig.env)
    assert listing.returncode == 0 and len(listing.stdout.strip().splitlines()) == 2
    assert "'farm'" in listing.stdout and "active" in listing.stdout

    revoked = run_atelier("admin", "apikey", "revoke", tenant_ref, str(record.id), cwd=rig.root, env=rig.env)
    assert revoked.returncode == 0 and record.prefix in revoked.stdout
    listing = run_atelier("admin", "apikey", "list", tenant_ref, cwd=rig.root, env=rig.env)
    assert listing.stdout.count("revoked") == 1


def test_refusals_are_one_line_with_status_2(rig: Rig) -> None:
    for args, words in [
        (("create", "nowhere:1"), "PLATFORM:ID"),
        (("revoke", new_tenant(), "atl_nothing"), "has no API key"),
        (("create", new_tenant(), "--name", "n" * 101), "at most 100"),
    ]:
        result = run_atelier("admin", "apikey", *args, cwd=rig.root, env=rig.env)
        assert result.returncode == 2, result
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
