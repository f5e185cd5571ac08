from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0009_relax")]

    initial = False

    operations = [
        ops.CreateModel(
            name="ChannelPolicy",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="channel_policies",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("channel", fields.CharField(max_length=64)),
                ("policy", fields.CharField(max_length=16)),
                ("set_by", fields.CharField(default="", max_length=64)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "channel_policies",
                "app": "models",
                "unique_together": (("tenant", "channel"),),
                "pk_attr": "id",
                "table_description": "What a channel (or a server, channel '*') does with flagged images",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="SafetyReview",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="safety_reviews",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("image_id", fields.IntField(unique=True)),
                ("job_id", fields.CharField(max_length=32)),
                ("blob_key", fields.CharField(max_length=255)),
                ("channel", fields.CharField(default="", max_length=64)),
                ("decision", fields.CharField(default="", max_length=16)),
                ("reviewer", fields.CharField(default="", max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("decided_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "safety_reviews",
                "app": "models",
                "indexes": [Index(fields=["tenant_id", "decision"])],
                "pk_attr": "id",
                "table_description": "Withheld images waiting for review, and the log of every decision",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="SafetyWord",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="safety_words",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("text", fields.CharField(max_length=200)),
                ("pattern", fields.BooleanField(default=False)),
                ("added_by", fields.CharField(default="", max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "safety_words",
                "app": "models",
                "unique_together": (("tenant", "text", "pattern"),),
                "pk_attr": "id",
                "table_description": "A server's words and patterns that refuse a prompt",
            },
            bases=["Model"],
        ),
    ]
