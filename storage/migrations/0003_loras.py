import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

from storage.lora_models import LoraStatus


class Migration(migrations.Migration):
    dependencies = [("models", "0002_quotas")]

    initial = False

    operations = [
        ops.CreateModel(
            name="LoraModel",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="loras",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=64)),
                ("family", fields.CharField(max_length=16)),
                ("base_model", fields.CharField(max_length=64)),
                ("trigger", fields.CharField(max_length=100)),
                (
                    "status",
                    fields.CharEnumField(
                        default=LoraStatus.TRAINING,
                        description="LoraStatus value",
                        enum_type=LoraStatus,
                        max_length=16,
                    ),
                ),
                ("weights_key", fields.CharField(null=True, max_length=255)),
                (
                    "sample_keys",
                    fields.JSONField(
                        default=list, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                (
                    "trained_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="trained_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="trained_loras",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("steps", fields.IntField()),
                ("job_id", fields.CharField(null=True, max_length=64)),
                ("error", fields.TextField(null=True, unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("finished_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "loras",
                "app": "models",
                "unique_together": (("tenant", "name"),),
                "pk_attr": "id",
                "table_description": "A LoRA trained for one tenant",
            },
            bases=["Model"],
        ),
    ]
