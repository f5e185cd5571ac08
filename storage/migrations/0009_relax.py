"""The relax lane (issue 17): the lane of each reservation and ledger entry (relax GPU time is recorded, not
charged against the fast budget), a per-person fast budget, and each member's chosen lane."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0008_retention")]

    initial = False

    operations = [
        ops.AddField(
            model_name="QuotaReservation",
            name="lane",
            field=fields.CharField(default="fast", db_default="fast", max_length=8),
        ),
        ops.AddField(
            model_name="QuotaLedger",
            name="lane",
            field=fields.CharField(default="fast", db_default="fast", max_length=8),
        ),
        ops.AddField(
            model_name="TenantQuota",
            name="gpu_seconds_per_user_per_month",
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name="MemberSettings",
            name="lane",
            field=fields.CharField(default="", db_default="", max_length=8),
        ),
    ]
