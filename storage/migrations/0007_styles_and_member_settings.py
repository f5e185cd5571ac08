from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0006_api")]

    initial = False

    operations = [
        ops.CreateModel(
            name="MemberSettings",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="member_settings",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("user_external_id", fields.CharField(max_length=64)),
                ("model", fields.CharField(default="", max_length=64)),
                ("aspect", fields.CharField(default="", max_length=16)),
                ("steps", fields.IntField(null=True)),
                ("style", fields.CharField(default="", max_length=32)),
                ("remix", fields.BooleanField(default=False)),
                ("private", fields.BooleanField(default=False)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "member_settings",
                "app": "models",
                "unique_together": (("tenant", "user_external_id"),),
                "pk_attr": "id",
                "table_description": "One member's defaults, remix and private mode in one tenant",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="TenantStyle",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="styles",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=32)),
                ("prompt", fields.TextField(unique=False)),
                ("negative", fields.TextField(unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "tenant_styles",
                "app": "models",
                "unique_together": (("tenant", "name"),),
                "pk_attr": "id",
                "table_description": "A style (prompt template and negative prompt) an admin added",
            },
            bases=["Model"],
        ),
    ]
