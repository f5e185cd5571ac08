"""What a tenant used in a period, per user and per model, from the ledger (net of refunds). GPU seconds of the
relax lane (jobs.relax) are shown apart: they are not charged against the fast budget."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from quotas.admin_tiers import TenantRef
from quotas.ledger import IN_FLIGHT, RELAX, TENANT_SCOPE
from quotas.periods import day_key, month_key, utcnow
from quotas.policy import policy_from_row, quota_row, tenant_for
from quotas.tiers import Tiers
from storage.models import User
from storage.quota_models import QuotaCounter, QuotaLedger


@dataclass(frozen=True)
class Usage:
    images: int
    gpu_seconds: float  # in the fast lane: what counts against the fast budget
    relax_gpu_seconds: float = 0.0  # in the relax lane: recorded, not charged against the fast budget

    def describe(self) -> str:
        relax = f" + {self.relax_gpu_seconds:.1f} relax GPU s" if self.relax_gpu_seconds else ""
        return f"{self.images} images, {self.gpu_seconds:.1f} GPU s{relax}"


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
            f"{self.tenant}, {self.period}: {self.total.describe()} ({self.unfinished_jobs} jobs unfinished)"
        ]
        if self.total.relax_gpu_seconds:
            lines.append(
                f"  relax lane: {self.total.relax_gpu_seconds:.1f} GPU s, not charged against the fast budget"
            )
        for title, rows in (("by user", self.by_user), ("by model", self.by_model)):
            if rows:
                lines.append(f"  {title}:")
                for key, u in sorted(rows.items(), key=lambda kv: -kv[1].images):
                    lines.append(f"    {key}: {u.describe()}")
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
        rows = await entries.values("user_id", "model", "images", "gpu_ms", "lane")
        users = dict(
            await User.filter(id__in={r["user_id"] for r in rows if r["user_id"]}).values_list(
                "id", "external_id"
            )
        )
        by_user: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        by_model: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        total = [0, 0, 0]
        for r in rows:
            for bucket in (by_user[users.get(r["user_id"], "-")], by_model[r["model"] or "-"], total):
                bucket[0] += r["images"]
                bucket[2 if r["lane"] == RELAX else 1] += r["gpu_ms"]
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


def _usage(sums: list[int]) -> Usage:
    return Usage(images=sums[0], gpu_seconds=sums[1] / 1000, relax_gpu_seconds=sums[2] / 1000)
