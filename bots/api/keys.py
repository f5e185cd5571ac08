"""API keys: made, listed and revoked by an operator (`atelier admin apikey create|list|revoke TENANT`), and
checked on every request.

A key is `atl_` and 32 random bytes (URL-safe base64); only its SHA-256 is stored (`storage.api_models.ApiKey`),
with its first 12 characters as the `prefix` an operator tells keys apart by. It is shown once, when made. Each
key has its own webhook signing secret (`whsec_…`), shown with it: webhooks for its jobs are signed with that.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from quotas.policy import parse_tenant_ref, tenant_for
from storage.api_models import ApiKey

KEY_PREFIX = "atl_"
PREFIX_CHARS = 12
LAST_USED_EVERY = timedelta(minutes=1)  # `last_used_at` is written at most this often per key


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRefused(Exception):
    """A key that does not authenticate; `code` is the API's error code (`invalid_key`, `key_revoked`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def create_key(tenant_ref: str, name: str = "") -> tuple[ApiKey, str]:
    """A new key of the tenant `PLATFORM:ID` (created if never seen), and its text (shown only now)."""
    parse_tenant_ref(tenant_ref)
    tenant = await tenant_for(tenant_ref)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = await ApiKey.create(
        tenant=tenant,
        name=name,
        prefix=key[:PREFIX_CHARS],
        key_hash=key_hash(key),
        webhook_secret="whsec_" + secrets.token_urlsafe(32),
    )
    return record, key


async def list_keys(tenant_ref: str) -> list[ApiKey]:
    parse_tenant_ref(tenant_ref)
    tenant = await tenant_for(tenant_ref)
    return await ApiKey.filter(tenant=tenant).order_by("id")


async def revoke_key(tenant_ref: str, which: str) -> ApiKey:
    """Revoke the tenant's key whose id or prefix is `which`; LookupError if it has none such. Revoking twice
    keeps the first time."""
    parse_tenant_ref(tenant_ref)
    tenant = await tenant_for(tenant_ref)
    query = ApiKey.filter(tenant=tenant)
    matches = await (query.filter(id=int(which)) if which.isdigit() else query.filter(prefix=which))
    if len(matches) != 1:
        raise LookupError(
            f"{tenant_ref} has no API key {which!r} (see `atelier admin apikey list {tenant_ref}`)"
        )
    record = matches[0]
    if record.revoked_at is None:
        record.revoked_at = datetime.now(UTC)
        await record.save(update_fields=["revoked_at"])
    return record


async def authenticate(key: str) -> ApiKey:
    """The live key record for the text `key` (its tenant fetched), or KeyRefused."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        raise KeyRefused("invalid_key", "this is not an Atelier API key")
    record = await ApiKey.get_or_none(key_hash=key_hash(key)).prefetch_related("tenant")
    if record is None:
        raise KeyRefused("invalid_key", "unknown API key")
    if record.revoked_at is not None:
        raise KeyRefused("key_revoked", f"this API key was revoked on {record.revoked_at:%Y-%m-%d %H:%M} UTC")
    now = datetime.now(UTC)
    if record.last_used_at is None or now - record.last_used_at > LAST_USED_EVERY:
        record.last_used_at = now
        await ApiKey.filter(id=record.id).update(last_used_at=now)
    return record


def describe(record: ApiKey) -> str:
    state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "active"
    used = f"last used {record.last_used_at:%Y-%m-%d %H:%M}" if record.last_used_at else "never used"
    name = f" {record.name!r}" if record.name else ""
    return (
        f"{record.id:>4}  {record.prefix}…{name}  {state}, {used}, created {record.created_at:%Y-%m-%d %H:%M}"
    )


# `atelier admin apikey …` (the admin command's parser and dispatch call these two)


def add_apikey_parser(commands: argparse._SubParsersAction) -> None:
    apikey = commands.add_parser("apikey", help="API keys of a tenant for the HTTP API (`atelier api`)")
    actions = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    tenant_help = "PLATFORM:ID, e.g. discord:1234 or slack:T0123"
    create = actions.add_parser(
        "create", help="make a key: prints its webhook signing secret, then the key itself as the last line"
    )
    create.add_argument("tenant", help=tenant_help)
    create.add_argument("--name", default="", help="what the key is for, shown in listings")
    listing = actions.add_parser("list", help="the tenant's keys (prefix, name, state, last use)")
    listing.add_argument("tenant", help=tenant_help)
    revoke = actions.add_parser("revoke", help="revoke a key at once (requests with it get 401)")
    revoke.add_argument("tenant", help=tenant_help)
    revoke.add_argument("key", help="the key's id or prefix, as `list` shows them")


async def run_apikey(args: argparse.Namespace) -> str:
    """What `atelier admin apikey …` prints; ValueError/LookupError for the caller to show as a usage error."""
    if args.apikey_command == "create":
        if len(args.name) > 100:
            raise ValueError("--name may be at most 100 characters")
        record, key = await create_key(args.tenant, args.name)
        return "\n".join(
            [
                f"API key {record.id} ({record.prefix}…) for {args.tenant}; it is shown only now.",
                f"webhook signing secret: {record.webhook_secret}",
                key,
            ]
        )
    if args.apikey_command == "list":
        return "\n".join(describe(r) for r in await list_keys(args.tenant)) or "no API keys"
    record = await revoke_key(args.tenant, args.key)
    return f"API key {record.id} ({record.prefix}…) revoked"
