from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0004_preferences_and_safety_flags")]

    initial = False

    operations = [
        ops.AddIndex(
            model_name="QuotaReservation",
            index=Index(fields=["state"]),
        ),
    ]
