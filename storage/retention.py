"""Retention's records: how long a tenant keeps its images, inputs and training data, and which input blobs each
job uses.

- `RetentionPolicy`: a tenant's own periods in days (null: the operator's default, ATELIER_RETENTION_*; 0: kept
  forever). A tenant without a row has every default.
- `JobInput`: one input blob (`inputs/<sha256>.png`) a job's spec names. Inputs are stored once per content
  (`jobs.inputs.store_input`), so one blob may serve jobs of several tenants: it is deleted only when every job
  that names it is past its own tenant's input retention (`jobs.retention`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:  # storage.models imports this module to register the models
    from storage.models import Job, Tenant


class RetentionPolicy(Model):
    id = fields.IntField(primary_key=True)
    tenant: fields.OneToOneRelation[Tenant] = fields.OneToOneField(
        "models.Tenant", related_name="retention", on_delete=fields.CASCADE
    )
    images_days = fields.IntField(null=True)
    inputs_days = fields.IntField(null=True)
    training_days = fields.IntField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "retention_policies"
        table_description = "How long one tenant keeps images, inputs and training data (null: default)"


class JobInput(Model):
    id = fields.IntField(primary_key=True)
    job: fields.ForeignKeyRelation[Job] = fields.ForeignKeyField(
        "models.Job", related_name="inputs", on_delete=fields.CASCADE
    )
    blob_key = fields.CharField(max_length=255, db_index=True)

    class Meta:
        table = "job_inputs"
        table_description = "An input blob a job's spec names"
        unique_together = (("job", "blob_key"),)


INPUT_KEY = re.compile(r"inputs/[0-9a-f]{64}\.png")  # jobs.inputs.store_input's keys: its PNG's SHA-256


def input_keys(spec: object) -> set[str]:
    """The input blob keys a job's spec names, wherever they sit (`image`, `mask`, `control_image`, a guided
    reference's `image`, …): every string that is exactly such a key (a prompt that merely mentions one is not)."""
    if isinstance(spec, str):
        return {spec} if INPUT_KEY.fullmatch(spec) else set()
    if isinstance(spec, dict):
        spec = list(spec.values())
    if isinstance(spec, list | tuple):
        return set().union(*(input_keys(item) for item in spec))
    return set()


async def record_job_inputs(job_id: str, spec: dict) -> None:
    """One `JobInput` row per input key of `spec` (none twice, however often it is called)."""
    for key in sorted(input_keys(spec)):
        await JobInput.get_or_create(job_id=job_id, blob_key=key)
