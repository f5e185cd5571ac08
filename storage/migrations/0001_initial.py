import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from storage.models import JobStatus


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="Tenant",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("platform", fields.CharField(max_length=16)),
                ("external_id", fields.CharField(max_length=64)),
                ("name", fields.CharField(default="", max_length=200)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "tenants",
                "app": "models",
                "unique_together": (("platform", "external_id"),),
                "pk_attr": "id",
                "table_description": "A Discord guild, Slack workspace or the CLI",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="User",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="users",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("external_id", fields.CharField(max_length=64)),
                ("name", fields.CharField(default="", max_length=200)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "users",
                "app": "models",
                "unique_together": (("tenant", "external_id"),),
                "pk_attr": "id",
                "table_description": "A person within one tenant",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Job",
            fields=[
                ("id", fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ("kind", fields.CharField(max_length=32)),
                ("model", fields.CharField(default="", max_length=64)),
                (
                    "spec",
                    fields.JSONField(encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads),
                ),
                (
                    "status",
                    fields.CharEnumField(
                        default=JobStatus.QUEUED,
                        db_index=True,
                        description="JobStatus value",
                        enum_type=JobStatus,
                        max_length=16,
                    ),
                ),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="jobs",
                        on_delete=OnDelete.SET_NULL,
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
                        related_name="jobs",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "reply_target",
                    fields.JSONField(
                        null=True, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("started_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("finished_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("delivered_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("attempts", fields.IntField(default=0)),
                ("error", fields.TextField(null=True, unique=False)),
                ("gpu_seconds", fields.FloatField(default=0)),
            ],
            options={
                "table": "jobs",
                "app": "models",
                "indexes": [Index(fields=["tenant_id", "created_at"])],
                "pk_attr": "id",
                "table_description": "One unit of GPU work",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Image",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "job",
                    fields.ForeignKeyField(
                        "models.Job",
                        source_field="job_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="images",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("index", fields.IntField()),
                ("blob_key", fields.CharField(max_length=255)),
                ("width", fields.IntField()),
                ("height", fields.IntField()),
                ("size_bytes", fields.IntField()),
                ("seed", fields.BigIntField()),
                ("sha256", fields.CharField(max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "images",
                "app": "models",
                "unique_together": (("job", "index"),),
                "pk_attr": "id",
                "table_description": "One output image of a job",
            },
            bases=["Model"],
        ),
    ]
