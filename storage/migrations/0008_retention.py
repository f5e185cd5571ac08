from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from storage.retention import input_keys

BACKFILL_BATCH = 500


async def record_existing_inputs(apps, schema_editor) -> None:
    """Jobs enqueued before this migration get their JobInput rows, so retention deletes their inputs too."""
    job_model = apps.get_model("models", "Job")
    job_input = apps.get_model("models", "JobInput")
    offset = 0
    while True:
        rows = (
            await job_model.all()
            .order_by("id")
            .offset(offset)
            .limit(BACKFILL_BATCH)
            .values_list("id", "spec")
        )
        if not rows:
            return
        offset += len(rows)
        found = [
            job_input(job_id=job_id, blob_key=key)
            for job_id, spec in rows
            for key in sorted(input_keys(spec))
        ]
        if found:
            await job_input.bulk_create(found)


class Migration(migrations.Migration):
    dependencies = [("models", "0007_styles_and_member_settings")]

    initial = False

    operations = [
        ops.CreateModel(
            name="JobInput",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "job",
                    fields.ForeignKeyField(
                        "models.Job",
                        source_field="job_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="inputs",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("blob_key", fields.CharField(db_index=True, max_length=255)),
            ],
            options={
                "table": "job_inputs",
                "app": "models",
                "unique_together": (("job", "blob_key"),),
                "pk_attr": "id",
                "table_description": "An input blob a job's spec names",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="RetentionPolicy",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "tenant",
                    fields.OneToOneField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="retention",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("images_days", fields.IntField(null=True)),
                ("inputs_days", fields.IntField(null=True)),
                ("training_days", fields.IntField(null=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "retention_policies",
                "app": "models",
                "pk_attr": "id",
                "table_description": "How long one tenant keeps images, inputs and training data (null: default)",
            },
            bases=["Model"],
        ),
        ops.AddIndex(
            model_name="Image",
            index=Index(fields=["sha256"]),
        ),
        ops.AddIndex(
            model_name="Image",
            index=Index(fields=["blob_key"]),
        ),
        ops.AddField(
            model_name="Job",
            name="images_expired_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="Job",
            name="inputs_expired_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="Job",
            name="training_expired_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.RunPython(record_existing_inputs),
    ]
