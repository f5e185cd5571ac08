"""LoRAs trained for a tenant: one row per (tenant, name), the weights and sample images in the blob store.

A row is created when training is requested (status `training`), so the name is taken from then on; the
training job marks it `ready` with its weights' blob key, or `failed`. A failed row does not keep its name:
the next training request with that name replaces it.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class LoraStatus(StrEnum):
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"


class LoraModel(Model):
    """One tenant's trained LoRA: usable in that tenant's requests as `--lora name:weight` once ready."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Tenant", related_name="loras", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=64)
    family = fields.CharField(max_length=16)
    base_model = fields.CharField(max_length=64)
    trigger = fields.CharField(max_length=100)
    status = fields.CharEnumField(
        LoraStatus, max_length=16, default=LoraStatus.TRAINING, description="LoraStatus value"
    )
    weights_key = fields.CharField(max_length=255, null=True)
    sample_keys = fields.JSONField(default=list)
    trained_by: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name="trained_loras", null=True, on_delete=fields.SET_NULL
    )
    steps = fields.IntField()
    job_id = fields.CharField(max_length=64, null=True)
    error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "loras"
        table_description = "A LoRA trained for one tenant"
        unique_together = (("tenant", "name"),)

    def __str__(self) -> str:
        return f"LoRA {self.name} of tenant {self.tenant_id}"  # type: ignore[attr-defined]
