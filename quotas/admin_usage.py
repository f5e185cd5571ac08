"""What a tenant used in a period, per user and per model, from the ledger (net of refunds)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from quotas.admin_tiers import TenantRef
from quotas.ledger import IN_FLIGHT, TENANT_SCOPE
from quotas.periods import day_key, month_key, utcnow
from quotas.policy import policy_from_row, quota_row, tenant_for
from quotas.tiers import Tiers
from storage.models import User
from storage.quota_models import QuotaCounter, QuotaLedger


@dataclass(frozen=True)
class Usage:
    images: int
    gpu_seconds: float


@dataclass(frozen=True)
class UsageReport:
    """What a tenant used in one period (a day `2025-05-03` or month `2025-05`, in its timezone), net of refunds,
    including jobs still running (charged their estimate until they settle)."""

    tenant: str
    period: str
    total: Usage
    by_user: dict[str, Usage]
    by_model: dict[str, Usage]
    unfinished_jobs: int

    def describe(self) -> str:
        lines = [
            f"{self.tenant}, {self.period}: {self.total.images} images, {self.total.gpu_seconds:.1f} GPU s"
            f" ({self.unfinished_jobs} jobs unfinished)"
        ]
        for title, rows in (("by user", self.by_user), ("by model", self.by_model)):
            if rows:
                lines.append(f"  {title}:")
                for key, u in sorted(rows.items(), key=lambda kv: -kv[1].images):
                    lines.append(f"    {key}: {u.images} images, {u.gpu_seconds:.1f} GPU s")
        return "\n".join(lines)


class UsageAdmin:
    """Usage reports; the tiers give each tenant's timezone (through its policy row)."""

    def __init__(self, tiers: Tiers) -> None:
        self.tiers = tiers

    async def usage(self, tenant: TenantRef, period: str = "today") -> UsageReport:
        """Usage per user and per model in `period`: `today`, `month`, a day `YYYY-MM-DD` or a month `YYYY-MM`,
        in the tenant's timezone."""
        t = await tenant_for(tenant)
        policy = policy_from_row(t, await quota_row(t, self.tiers), self.tiers)
        now = utcnow()
        key = {"today": day_key(now, policy.timezone), "month": month_key(now, policy.timezone)}.get(
            period, period
        )
        if len(key) == 10 and key[4] == "-" and key[7] == "-":
            entries = QuotaLedger.filter(tenant_id=t.id, day=key)
        elif len(key) == 7 and key[4] == "-":
            entries = QuotaLedger.filter(tenant_id=t.id, month=key)
        else:
            raise ValueError(f"period must be today, month, YYYY-MM-DD or YYYY-MM (got {period!r})")
        rows = await entries.values("user_id", "model", "images", "gpu_ms")
        users = dict(
            await User.filter(id__in={r["user_id"] for r in rows if r["user_id"]}).values_list(
                "id", "external_id"
            )
        )
        by_user: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_model: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        total = [0, 0]
        for r in rows:
            for bucket in (by_user[users.get(r["user_id"], "-")], by_model[r["model"] or "-"], total):
                bucket[0] += r["images"]
                bucket[1] += r["gpu_ms"]
        unfinished = await QuotaCounter.get_or_none(
            tenant_id=t.id, scope=TENANT_SCOPE, metric=IN_FLIGHT, period=""
        )
        return UsageReport(
            tenant=str(t),
            period=key,
            total=_usage(total),
            by_user={k: _usage(v) for k, v in by_user.items()},
            by_model={k: _usage(v) for k, v in by_model.items()},
            unfinished_jobs=unfinished.used if unfinished else 0,
        )


def _usage(pair: list[int]) -> Usage:
    return Usage(images=pair[0], gpu_seconds=pair[1] / 1000)
