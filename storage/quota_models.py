"""Quota records: each tenant's policy, bans, usage counters, open reservations and the append-only ledger.

`quotas` owns the rules; these are only the tables. They are registered with the ``models`` app by the import at
the end of ``storage/models.py``, so the migrations see them like any other model. Usage is kept in integers
(images, GPU milliseconds) so that the ledger sums to the counters exactly.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from storage.models import Tenant, User


class TenantQuota(Model):
    """A tenant's tier, its limit overrides (null: the tier's default), its reset timezone and pause switch."""

    id = fields.IntField(primary_key=True)
    tenant: fields.OneToOneRelation[Tenant] = fields.OneToOneField(
        "models.Tenant", related_name="quota", on_delete=fields.CASCADE
    )
    tier = fields.CharField(max_length=32)
    timezone = fields.CharField(max_length=64, default="UTC")
    paused = fields.BooleanField(default=False)
    images_per_day = fields.IntField(null=True)
    gpu_seconds_per_month = fields.BigIntField(null=True)
    images_per_user_per_day = fields.IntField(null=True)
    gpu_seconds_per_user_per_month = fields.BigIntField(null=True)
    queued_jobs_per_user = fields.IntField(null=True)
    concurrent_jobs = fields.IntField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "tenant_quotas"
        table_description = "A tenant's tier, limit overrides, timezone and pause switch"


class UserBan(Model):
    """A user an admin has barred from making requests in their tenant; unbanning deletes the row."""

    id = fields.IntField(primary_key=True)
    user: fields.OneToOneRelation[User] = fields.OneToOneField(
        "models.User", related_name="ban", on_delete=fields.CASCADE
    )
    reason = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "user_bans"
        table_description = "A user barred from making requests in their tenant"


class QuotaCounter(Model):
    """Usage of one metric by one scope (the tenant, or one of its users) in one period (a day or month key in
    the tenant's timezone; empty for gauges such as jobs in flight). Admission raises `used` only with a
    conditional UPDATE, so concurrent requests can never push it past a limit."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="quota_counters", on_delete=fields.CASCADE
    )
    scope = fields.CharField(max_length=80)
    metric = fields.CharField(max_length=16)
    period = fields.CharField(max_length=16)
    used = fields.BigIntField(default=0)

    class Meta:
        table = "quota_counters"
        table_description = "Usage of one metric by a tenant or user in one period"
        unique_together = (("tenant", "scope", "metric", "period"),)


class ReservationState(StrEnum):
    """An open reservation is closed exactly once: settled (charged what was used) or refunded."""

    OPEN = "open"
    SETTLED = "settled"
    REFUNDED = "refunded"


class QuotaReservation(Model):
    """What admitting one job reserved, until the job settles or is refunded (the index of open reservations)."""

    job_id = fields.CharField(max_length=64, primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="quota_reservations", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="quota_reservations", null=True, on_delete=fields.SET_NULL
    )
    tier = fields.CharField(max_length=32)
    model = fields.CharField(max_length=64, default="")
    images = fields.IntField()
    gpu_ms = fields.BigIntField()
    day = fields.CharField(max_length=16)
    month = fields.CharField(max_length=16)
    # "fast", or "relax": admitted past a spent fast budget (or asked for); its GPU time is not charged (jobs.relax)
    lane = fields.CharField(max_length=8, default="fast", db_default="fast")
    state = fields.CharEnumField(
        ReservationState,
        max_length=16,
        default=ReservationState.OPEN,
        description="ReservationState value",
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    closed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "quota_reservations"
        table_description = "What admitting one job reserved, until it settles or is refunded"
        # By state alone: admission counts every tenant's open reservations (the queue cap, quotas.ledger).
        indexes = (("tenant_id", "state"), ("state",))


class LedgerKind(StrEnum):
    RESERVE = "reserve"
    SETTLE = "settle"
    REFUND = "refund"


class QuotaLedger(Model):
    """One append-only entry per reserve, settle and refund. `images` and `gpu_ms` are the signed changes the
    entry made to usage, so summing a period's entries gives its counters. A job has at most one opening entry
    (reserve) and one closing entry (settle or refund): the unique (job_id, phase) makes a second one fail."""

    id = fields.IntField(primary_key=True)
    job_id = fields.CharField(max_length=64, db_index=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="quota_ledger", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="quota_ledger", null=True, on_delete=fields.SET_NULL
    )
    model = fields.CharField(max_length=64, default="")
    kind = fields.CharEnumField(LedgerKind, max_length=16, description="LedgerKind value")
    phase = fields.CharField(max_length=8)  # "open" for reserve, "close" for settle and refund
    images = fields.IntField()
    gpu_ms = fields.BigIntField()
    day = fields.CharField(max_length=16)
    month = fields.CharField(max_length=16)
    lane = fields.CharField(max_length=8, default="fast", db_default="fast")  # as its reservation's
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "quota_ledger"
        table_description = "Append-only reserve, settle and refund entries"
        unique_together = (("job_id", "phase"),)
        indexes = (("tenant_id", "day"), ("tenant_id", "month"))
