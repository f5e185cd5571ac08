from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0003_loras")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Preferences",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.OneToOneField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="preferences",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("safety", fields.BooleanField(default=True)),
                ("upscale_emoji", fields.CharField(default="", max_length=64)),
                ("faces_emoji", fields.CharField(default="", max_length=64)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "preferences",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A tenant's choices: safety filter, reaction emoji",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="Image",
            name="flagged",
            field=fields.BooleanField(default=False, db_default=False),
        ),
    ]
