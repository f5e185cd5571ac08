"""Database records: tenants (a Discord guild, a Slack workspace, the CLI), their users, jobs and images.

The schema is created and changed only by the migrations in ``storage/migrations`` (see its README), never by
``generate_schemas``, so a deployment upgrades in place. Changing a field here needs a new migration there.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

PLATFORMS = ("discord", "slack", "cli")


class Tenant(Model):
    """One community the service answers in: a Discord guild, a Slack workspace, or the local CLI."""

    id = fields.IntField(primary_key=True)
    platform = fields.CharField(max_length=16)
    external_id = fields.CharField(max_length=64)
    name = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    users: fields.ReverseRelation[User]
    jobs: fields.ReverseRelation[Job]

    class Meta:
        table = "tenants"
        # Explicit, so that editing the docstring (the default table comment) needs no migration.
        table_description = "A Discord guild, Slack workspace or the CLI"
        unique_together = (("platform", "external_id"),)

    def __str__(self) -> str:
        return f"{self.platform}:{self.external_id}"


class User(Model):
    """A person within one tenant (a Discord member id is per-user, but quotas and history are per tenant)."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="users", on_delete=fields.CASCADE
    )
    external_id = fields.CharField(max_length=64)
    name = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    jobs: fields.ReverseRelation[Job]

    class Meta:
        table = "users"
        table_description = "A person within one tenant"
        unique_together = (("tenant", "external_id"),)

    def __str__(self) -> str:
        return f"user {self.external_id} of tenant {self.tenant_id}"  # type: ignore[attr-defined]


class JobStatus(StrEnum):
    """Where a job is in its life; only the three last values are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Job(Model):
    """One unit of GPU work, keyed by an id that ``jobs`` derives from the request, so a retry finds it."""

    id = fields.CharField(max_length=64, primary_key=True)
    kind = fields.CharField(max_length=32)
    model = fields.CharField(max_length=64, default="")
    spec = fields.JSONField()
    # max_length and description are fixed (not derived from the enum) so adding a status needs no migration.
    status = fields.CharEnumField(
        JobStatus, max_length=16, default=JobStatus.QUEUED, db_index=True, description="JobStatus value"
    )
    tenant: fields.ForeignKeyNullableRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="jobs", null=True, on_delete=fields.SET_NULL
    )
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="jobs", null=True, on_delete=fields.SET_NULL
    )
    reply_target = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    delivered_at = fields.DatetimeField(null=True)
    attempts = fields.IntField(default=0)
    error = fields.TextField(null=True)
    gpu_seconds = fields.FloatField(default=0)
    # Set by retention (jobs.retention) before it deletes what they name, so a retry finishes the deletion and
    # the buttons and the gallery can say "expired" instead of "not found".
    images_expired_at = fields.DatetimeField(null=True)
    inputs_expired_at = fields.DatetimeField(null=True)
    training_expired_at = fields.DatetimeField(null=True)

    images: fields.ReverseRelation[Image]

    class Meta:
        table = "jobs"
        table_description = "One unit of GPU work"
        indexes = (("tenant_id", "created_at"),)

    def __str__(self) -> str:
        return f"job {self.id} ({self.kind})"


class Image(Model):
    """One output image of a job; the bytes live in the blob store under ``blob_key``."""

    id = fields.IntField(primary_key=True)
    job: fields.ForeignKeyRelation[Job] = fields.ForeignKeyField(
        "models.Job", related_name="images", on_delete=fields.CASCADE
    )
    index = fields.IntField()
    blob_key = fields.CharField(max_length=255)
    width = fields.IntField()
    height = fields.IntField()
    size_bytes = fields.IntField()
    seed = fields.BigIntField()
    sha256 = fields.CharField(max_length=64)  # of the pixels as a bare PNG (output.png_bytes)
    flagged = fields.BooleanField(default=False, db_default=False)  # by the model's safety checker
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "images"
        table_description = "One output image of a job"
        unique_together = (("job", "index"),)
        # The safety filter looks images up by content and by key; retention keeps a shared thumbnail while
        # another image with the same content remains.
        indexes = (("sha256",), ("blob_key",))

    def __str__(self) -> str:
        return f"image {self.index} of job {self.job_id}"  # type: ignore[attr-defined]


async def get_or_create_tenant(platform: str, external_id: str, name: str = "") -> Tenant:
    """Return the tenant for ``(platform, external_id)``, creating it once even under concurrent callers.

    A non-empty ``name`` that differs from the stored one replaces it (guilds and workspaces get renamed).
    """
    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}: expected one of {', '.join(PLATFORMS)}")
    if not external_id:
        raise ValueError("a tenant needs a non-empty external_id (the guild, workspace or CLI id)")
    # Model.get_or_create inserts inside a transaction (a savepoint when nested) and re-reads on
    # IntegrityError, so the loser of a race gets the winner's row instead of an error.
    tenant, created = await Tenant.get_or_create(
        defaults={"name": name}, platform=platform, external_id=external_id
    )
    if not created and name and tenant.name != name:
        tenant.name = name
        await tenant.save(update_fields=["name"])
    return tenant


async def get_or_create_user(tenant: Tenant, external_id: str, name: str = "") -> User:
    """Return the user ``external_id`` of ``tenant``, creating it once even under concurrent callers.

    A non-empty ``name`` that differs from the stored one replaces it (display names change).
    """
    if not external_id:
        raise ValueError("a user needs a non-empty external_id (the platform's user id)")
    user, created = await User.get_or_create(defaults={"name": name}, tenant=tenant, external_id=external_id)
    if not created and name and user.name != name:
        user.name = name
        await user.save(update_fields=["name"])
    return user


# The quota tables live in their own module; importing them here registers them with the ``models`` app.
from storage.api_models import ApiKey, Batch, WebhookDelivery  # noqa: E402, F401
from storage.lora_models import LoraModel  # noqa: E402, F401
from storage.moderation import ChannelPolicy, SafetyReview, SafetyWord  # noqa: E402, F401
from storage.preferences import Preferences  # noqa: E402, F401
from storage.quota_models import QuotaCounter, QuotaLedger, QuotaReservation, TenantQuota, UserBan  # noqa: E402, F401
from storage.retention import JobInput, RetentionPolicy  # noqa: E402, F401
from storage.settings import MemberSettings, TenantStyle  # noqa: E402, F401
