from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from storage.quota_models import LedgerKind, ReservationState


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    initial = False

    operations = [
        ops.CreateModel(
            name="QuotaCounter",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="quota_counters",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("scope", fields.CharField(max_length=80)),
                ("metric", fields.CharField(max_length=16)),
                ("period", fields.CharField(max_length=16)),
                ("used", fields.BigIntField(default=0)),
            ],
            options={
                "table": "quota_counters",
                "app": "models",
                "unique_together": (("tenant", "scope", "metric", "period"),),
                "pk_attr": "id",
                "table_description": "Usage of one metric by a tenant or user in one period",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="QuotaLedger",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("job_id", fields.CharField(db_index=True, max_length=64)),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="quota_ledger",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="quota_ledger",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("model", fields.CharField(default="", max_length=64)),
                (
                    "kind",
                    fields.CharEnumField(description="LedgerKind value", enum_type=LedgerKind, max_length=16),
                ),
                ("phase", fields.CharField(max_length=8)),
                ("images", fields.IntField()),
                ("gpu_ms", fields.BigIntField()),
                ("day", fields.CharField(max_length=16)),
                ("month", fields.CharField(max_length=16)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "quota_ledger",
                "app": "models",
                "unique_together": (("job_id", "phase"),),
                "indexes": [Index(fields=["tenant_id", "day"]), Index(fields=["tenant_id", "month"])],
                "pk_attr": "id",
                "table_description": "Append-only reserve, settle and refund entries",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="QuotaReservation",
            fields=[
                ("job_id", fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="quota_reservations",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="quota_reservations",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("tier", fields.CharField(max_length=32)),
                ("model", fields.CharField(default="", max_length=64)),
                ("images", fields.IntField()),
                ("gpu_ms", fields.BigIntField()),
                ("day", fields.CharField(max_length=16)),
                ("month", fields.CharField(max_length=16)),
                (
                    "state",
                    fields.CharEnumField(
                        default=ReservationState.OPEN,
                        description="ReservationState value",
                        enum_type=ReservationState,
                        max_length=16,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("closed_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "quota_reservations",
                "app": "models",
                "indexes": [Index(fields=["tenant_id", "state"])],
                "pk_attr": "job_id",
                "table_description": "What admitting one job reserved, until it settles or is refunded",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="TenantQuota",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.OneToOneField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="quota",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("tier", fields.CharField(max_length=32)),
                ("timezone", fields.CharField(default="UTC", max_length=64)),
                ("paused", fields.BooleanField(default=False)),
                ("images_per_day", fields.IntField(null=True)),
                ("gpu_seconds_per_month", fields.BigIntField(null=True)),
                ("images_per_user_per_day", fields.IntField(null=True)),
                ("queued_jobs_per_user", fields.IntField(null=True)),
                ("concurrent_jobs", fields.IntField(null=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "tenant_quotas",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A tenant's tier, limit overrides, timezone and pause switch",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="UserBan",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "user",
                    fields.OneToOneField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="ban",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("reason", fields.CharField(default="", max_length=200)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "user_bans",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A user barred from making requests in their tenant",
            },
            bases=["Model"],
        ),
    ]
