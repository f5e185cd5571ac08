"""Records of the HTTP API (`bots/api`): API keys, batches and outgoing webhook deliveries.

An API key belongs to one tenant and acts only on that tenant's jobs, images and LoRAs. Only a hash of the key is
stored (keys are 32 random bytes, so one SHA-256 suffices); `prefix` is its first characters, shown in listings
so an operator can tell keys apart. Each key has its own webhook signing secret: webhooks for jobs and batches
submitted with the key are signed with it (HMAC-SHA256), so a receiver holds the secret, never the key.

A webhook delivery is a row before it is a request: it is written when the job or batch ends, with an id that is
the receiver's idempotency key, and retried with backoff until it is delivered or a day has passed.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class ApiKey(Model):
    """One tenant's key for the HTTP API."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Tenant", related_name="api_keys", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100, default="")
    prefix = fields.CharField(max_length=16)
    key_hash = fields.CharField(max_length=64, unique=True)
    webhook_secret = fields.CharField(max_length=80)
    created_at = fields.DatetimeField(auto_now_add=True)
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_keys"
        table_description = "A tenant's key for the HTTP API (hashed)"

    def __str__(self) -> str:
        return f"api key {self.prefix}… of tenant {self.tenant_id}"  # type: ignore[attr-defined]


class Batch(Model):
    """Up to 100 prompts submitted together through the API; its jobs are ordinary jobs."""

    id = fields.CharField(max_length=64, primary_key=True)
    tenant: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Tenant", related_name="batches", on_delete=fields.CASCADE
    )
    api_key: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.ApiKey", related_name="batches", null=True, on_delete=fields.SET_NULL
    )
    job_ids = fields.JSONField()
    webhook_url = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "batches"
        table_description = "Prompts submitted together through the HTTP API"
        indexes = (("tenant_id", "created_at"),)

    def __str__(self) -> str:
        return f"batch {self.id}"


class WebhookDelivery(Model):
    """One signed POST to a receiver, kept until it is delivered or given up; `id` is its idempotency id."""

    id = fields.CharField(max_length=64, primary_key=True)
    api_key: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.ApiKey", related_name="webhook_deliveries", null=True, on_delete=fields.SET_NULL
    )
    subject = fields.CharField(max_length=64)  # the job or batch id
    event = fields.CharField(max_length=32)  # e.g. job.succeeded, batch.completed
    url = fields.TextField()
    payload = fields.JSONField()
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(db_index=True)
    delivered_at = fields.DatetimeField(null=True)
    given_up_at = fields.DatetimeField(null=True)
    last_status = fields.IntField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "webhook_deliveries"
        table_description = "A signed webhook POST and its attempts"

    def __str__(self) -> str:
        return f"webhook {self.id} ({self.event})"
