"""Admission and settlement: reserve a job's cost atomically, then settle what it used or refund it, once.

`reserve` runs one transaction: it claims the job id (a reservation row; a second reserve for the same job finds
it and reserves nothing), then raises each usage counter with one conditional UPDATE (`... SET used = used + n
WHERE ... AND used <= limit - n`). An UPDATE that matches no row means the limit would be passed: the transaction
rolls back and nothing is reserved. PostgreSQL re-checks the WHERE on the locked row, so concurrent admissions
queue on the counter row and can never over-admit; SQLite runs one writing transaction at a time. Counters are
always touched in the same order, so concurrent transactions cannot deadlock.

The installation's queue cap (`quotas.tiers.QueueCap`) is checked in the same transaction. Its share per tenant
is one more bound on the tenant's unfinished-jobs counter (the conditional UPDATE above). The global cap counts
open reservations (an unfinished job holds one) after taking a transaction-scoped PostgreSQL advisory lock, which
every admission takes first, so two admissions cannot both see room for the last job; SQLite runs one writing
transaction at a time. A refusal by either is `QueueBusy`, and nothing is reserved.

`precheck` asks the same questions without reserving anything, for front-ends that must know before they fetch
a request's inputs or post anything (a reaction by a banned member downloads nothing).

Lanes (`jobs.relax`): a job is admitted in the fast lane, charged against its tenant's and its person's fast
budget (GPU seconds per month), or in the relax lane, where no GPU time is charged (it is recorded in the ledger,
under lane `relax`, and shown apart by `atelier admin usage`); every other limit holds in both. Asked for `auto`
(no choice made), a job whose GPU charge would pass a fast budget is admitted in the relax lane when the tier
allows relax (`quotas.tiers.Tier.relax`), and refused as before otherwise; `fast` refuses past the budget;
`relax` is refused, naming the tier, where the tier has no relax lane.

`settle` and `refund` close a reservation: a conditional UPDATE from `open` lets exactly one of them win, in the
same transaction as the counter changes and the ledger entry (whose unique (job_id, phase) is a second guard). A
job that runs twice therefore settles once, and a cancelled job that still ran is refunded or settled, not both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from quotas.errors import (
    QueueBusy,
    QuotaExceeded,
    QuotaRefused,
    RelaxNotAllowed,
    TenantPaused,
    UserBanned,
)
from quotas.periods import day_key, month_key, next_day, next_month, utcnow
from quotas.policy import Policy, policy_for
from quotas.tiers import LIMIT_LABELS, QueueCap, Tiers
from storage.db import CONNECTION_NAME
from storage.models import Tenant, User
from storage.quota_models import (
    LedgerKind,
    QuotaCounter,
    QuotaLedger,
    QuotaReservation,
    ReservationState,
    UserBan,
)

IMAGES, GPU_MS, IN_FLIGHT = "images", "gpu_ms", "in_flight"
TENANT_SCOPE = "tenant"
QUEUE_SHARE = "queue_share"  # the limit name of a tenant's share of the queue cap
QUEUE_LOCK = 0x61746C_71636170  # the advisory lock of the global queue cap ("atl" "qcap")
FAST, RELAX, AUTO = "fast", "relax", "auto"
LANES = (AUTO, FAST, RELAX)


def user_scope(user_id: int) -> str:
    return f"user:{user_id}"


@dataclass(frozen=True)
class Admission:
    """A job admitted against its tenant's quota: the tier it runs at and the GPU time reserved for it.
    `created` is False when the job had been admitted before (nothing new was reserved)."""

    job_id: str
    tier: str
    weight: float
    gpu_ms: int
    created: bool
    lane: str = FAST  # FAST or RELAX: where the job was admitted


@dataclass(frozen=True)
class _Charge:
    scope: str
    metric: str
    period: str
    amount: int
    limit_name: str
    limit: int | None  # in the counter's unit (GPU milliseconds for GPU time)
    resets_at: datetime | None


class _Refused(Exception):
    def __init__(self, charge: _Charge) -> None:
        self.charge = charge


class _Busy(Exception):
    def __init__(self, waiting: int) -> None:
        self.waiting = waiting


async def precheck(
    tenant: Tenant,
    user: User | None,
    tiers: Tiers,
    *,
    images: int = 1,
    jobs: int = 1,
    lane: str = AUTO,
    now: datetime | None = None,
) -> None:
    """Raise the refusal `reserve` would raise for `jobs` jobs of `images` images in all (a pause, a ban, the
    queue cap, a limit already reached or one the jobs together would pass), reserving nothing; `reserve` still
    decides atomically afterwards, job by job. A spent fast budget refuses only where `lane` could not go on in
    the relax lane."""
    now = now or utcnow()
    policy = await policy_for(tenant, tiers)
    await _gate(policy, user)
    _check_lane(policy, lane)
    waiting = await _waiting()
    if waiting + jobs > tiers.queue_cap.max_jobs:
        raise QueueBusy(waiting)
    relax_possible = lane == RELAX or (lane == AUTO and policy.tier.relax)
    for charge in _charges(policy, user, images, 0, now, tiers.queue_cap, relax=relax_possible):
        if charge.metric == IN_FLIGHT:
            charge = replace(charge, amount=jobs)
        if charge.limit is None:
            continue
        used = await QuotaCounter.filter(
            tenant_id=tenant.id, scope=charge.scope, metric=charge.metric, period=charge.period
        ).values_list("used", flat=True)
        if (used[0] if used else 0) > charge.limit - charge.amount:
            raise await _refusal(tenant, charge)


def _check_lane(policy: Policy, lane: str) -> None:
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}: choose one of {', '.join(LANES)}")
    if lane == RELAX and not policy.tier.relax:
        raise RelaxNotAllowed(policy.tier.name)


async def _gate(policy: Policy, user: User | None) -> None:
    if policy.paused:
        raise TenantPaused()
    if user is not None and await UserBan.exists(user_id=user.id):
        raise UserBanned()


async def _waiting(conn=None) -> int:
    """Unfinished jobs of all tenants: their open reservations."""
    query = QuotaReservation.filter(state=ReservationState.OPEN)
    return await (query.using_db(conn) if conn is not None else query).count()


async def _hold_queue(conn, cap: QueueCap) -> None:
    """Within an admission's transaction: wait for the global cap's lock (PostgreSQL; released at commit or
    rollback), then raise _Busy when the installation already holds `cap.max_jobs` unfinished jobs."""
    if conn.capabilities.dialect == "postgres":
        await conn.execute_query("SELECT pg_advisory_xact_lock($1)", [QUEUE_LOCK])
    waiting = await _waiting(conn)
    if waiting >= cap.max_jobs:
        raise _Busy(waiting)


async def reserve(
    job_id: str,
    *,
    tenant: Tenant,
    user: User | None,
    model: str,
    images: int,
    gpu_ms: int,
    tiers: Tiers,
    lane: str = AUTO,
    now: datetime | None = None,
) -> Admission:
    """Admit job `job_id` for `tenant` (and `user`), reserving `images` and `gpu_ms` (an estimate) plus one
    unfinished job, in the lane `lane` leads to (see the module's docstring). Raises QuotaExceeded naming the
    limit, TenantPaused, UserBanned or RelaxNotAllowed; reserves nothing then."""
    now = now or utcnow()
    policy = await policy_for(tenant, tiers)
    await _gate(policy, user)
    _check_lane(policy, lane)
    relax = lane == RELAX
    charges = _charges(policy, user, images, gpu_ms, now, tiers.queue_cap, relax=relax)
    await _ensure_counters(tenant, charges)
    day, month = day_key(now, policy.timezone), month_key(now, policy.timezone)
    try:
        async with in_transaction(CONNECTION_NAME) as conn:
            if not await QuotaReservation.filter(job_id=job_id).using_db(conn).exists():
                await _hold_queue(conn, tiers.queue_cap)  # a repeat of an admitted job is never busy
            await QuotaReservation.create(
                job_id=job_id,
                tenant=tenant,
                user=user,
                tier=policy.tier.name,
                model=model,
                images=images,
                gpu_ms=gpu_ms,
                day=day,
                month=month,
                lane=RELAX if relax else FAST,
                using_db=conn,
            )
            for charge in charges:
                query = QuotaCounter.filter(
                    tenant_id=tenant.id, scope=charge.scope, metric=charge.metric, period=charge.period
                )
                if charge.limit is not None:
                    query = query.filter(used__lte=charge.limit - charge.amount)
                if await query.using_db(conn).update(used=F("used") + charge.amount) == 0:
                    raise _Refused(charge)
            await _append(
                conn,
                LedgerKind.RESERVE,
                job_id,
                tenant.id,
                user and user.id,
                model,
                images,
                gpu_ms,
                day,
                month,
                RELAX if relax else FAST,
            )
    except IntegrityError:
        existing = await QuotaReservation.get_or_none(job_id=job_id)
        if existing is None:
            raise
        return Admission(
            job_id, existing.tier, policy.tier.weight, existing.gpu_ms, created=False, lane=existing.lane
        )
    except _Refused as refused:
        if lane == AUTO and refused.charge.metric == GPU_MS and policy.tier.relax:
            # The fast budget is spent and the tier allows relax: the job goes on there instead.
            return await reserve(
                job_id,
                tenant=tenant,
                user=user,
                model=model,
                images=images,
                gpu_ms=gpu_ms,
                tiers=tiers,
                lane=RELAX,
                now=now,
            )
        raise await _refusal(tenant, refused.charge) from None
    except _Busy as busy:
        raise QueueBusy(busy.waiting) from None
    return Admission(
        job_id, policy.tier.name, policy.tier.weight, gpu_ms, created=True, lane=RELAX if relax else FAST
    )


async def settle(job_id: str, *, gpu_seconds: float, images: int) -> bool:
    """Charge job `job_id` what it used instead of what was reserved; False if it was already closed (settled or
    refunded) or never reserved."""
    return await _close(job_id, LedgerKind.SETTLE, used=(images, round(gpu_seconds * 1000)))


async def refund(job_id: str) -> bool:
    """Give back everything job `job_id` reserved; False if it was already closed or never reserved."""
    return await _close(job_id, LedgerKind.REFUND, used=None)


async def _close(job_id: str, kind: LedgerKind, used: tuple[int, int] | None) -> bool:
    state = ReservationState.SETTLED if kind == LedgerKind.SETTLE else ReservationState.REFUNDED
    async with in_transaction(CONNECTION_NAME) as conn:
        claimed = (
            await QuotaReservation.filter(job_id=job_id, state=ReservationState.OPEN)
            .using_db(conn)
            .update(state=state, closed_at=utcnow())
        )
        if not claimed:
            return False
        r = await QuotaReservation.get(job_id=job_id).using_db(conn)
        images, gpu_ms = (used[0] - r.images, used[1] - r.gpu_ms) if used else (-r.images, -r.gpu_ms)
        fast = (
            r.lane != RELAX
        )  # a relax job's GPU time is in the ledger only, not in the fast budget's counters
        changes = [
            (TENANT_SCOPE, IMAGES, r.day, images),
            *([(TENANT_SCOPE, GPU_MS, r.month, gpu_ms)] if fast else []),
            (TENANT_SCOPE, IN_FLIGHT, "", -1),
        ]
        if r.user_id is not None:  # type: ignore[attr-defined]
            scope = user_scope(r.user_id)  # type: ignore[attr-defined]
            changes += [(scope, IMAGES, r.day, images), (scope, IN_FLIGHT, "", -1)]
            changes += [(scope, GPU_MS, r.month, gpu_ms)] if fast else []
        for scope, metric, period, amount in changes:
            await (
                QuotaCounter.filter(tenant_id=r.tenant_id, scope=scope, metric=metric, period=period)  # type: ignore[attr-defined]
                .using_db(conn)
                .update(used=F("used") + amount)
            )
        await _append(
            conn, kind, job_id, r.tenant_id, r.user_id, r.model, images, gpu_ms, r.day, r.month, r.lane
        )  # type: ignore[attr-defined]
    return True


def _charges(
    policy: Policy,
    user: User | None,
    images: int,
    gpu_ms: int,
    now: datetime,
    cap: QueueCap,
    *,
    relax: bool = False,
) -> list[_Charge]:
    """What admitting one job adds to each counter, in the fixed order every transaction uses. The tenant's
    unfinished jobs are bounded by the lower of its concurrent-jobs limit and its share of the queue cap. A relax
    job charges no GPU time (the fast budgets)."""
    tz, limits = policy.timezone, policy.limits
    day, month = day_key(now, tz), month_key(now, tz)
    tomorrow, next_first = next_day(now, tz), next_month(now, tz)
    charges = [
        _Charge(TENANT_SCOPE, IMAGES, day, images, "images_per_day", limits.images_per_day, tomorrow),
        *(
            []
            if relax
            else [
                _Charge(
                    TENANT_SCOPE,
                    GPU_MS,
                    month,
                    gpu_ms,
                    "gpu_seconds_per_month",
                    _ms(limits.gpu_seconds_per_month),
                    next_first,
                )
            ]
        ),
        _in_flight_charge(limits.concurrent_jobs, cap),
    ]
    if user is not None:
        scope = user_scope(user.id)
        charges += [
            _Charge(
                scope,
                IMAGES,
                day,
                images,
                "images_per_user_per_day",
                limits.images_per_user_per_day,
                tomorrow,
            ),
            _Charge(scope, IN_FLIGHT, "", 1, "queued_jobs_per_user", limits.queued_jobs_per_user, None),
        ]
        if not relax:
            per_user = _ms(limits.gpu_seconds_per_user_per_month)
            charges.append(
                _Charge(scope, GPU_MS, month, gpu_ms, "gpu_seconds_per_user_per_month", per_user, next_first)
            )
    return charges


def _ms(seconds: int | None) -> int | None:
    return None if seconds is None else seconds * 1000


def _in_flight_charge(concurrent_jobs: int | None, cap: QueueCap) -> _Charge:
    if concurrent_jobs is not None and concurrent_jobs <= cap.per_tenant:
        return _Charge(TENANT_SCOPE, IN_FLIGHT, "", 1, "concurrent_jobs", concurrent_jobs, None)
    return _Charge(TENANT_SCOPE, IN_FLIGHT, "", 1, QUEUE_SHARE, cap.per_tenant, None)


async def _ensure_counters(tenant: Tenant, charges: Iterable[_Charge]) -> None:
    """Create the counter rows the charges need (INSERT … ON CONFLICT DO NOTHING), outside the transaction."""
    rows = [QuotaCounter(tenant=tenant, scope=c.scope, metric=c.metric, period=c.period) for c in charges]
    await QuotaCounter.bulk_create(rows, ignore_conflicts=True)


async def _refusal(tenant: Tenant, charge: _Charge) -> QuotaRefused:
    """What a refused charge tells the user: the limit it hit, or that Atelier is busy (a tenant that holds its
    whole share of the queue is told the queue is busy, which it is, for that tenant)."""
    if charge.limit_name == QUEUE_SHARE:
        return QueueBusy(await _waiting())
    # precheck may refuse before the counter exists (a request larger than the limit on a fresh tenant)
    found = await QuotaCounter.filter(
        tenant_id=tenant.id, scope=charge.scope, metric=charge.metric, period=charge.period
    ).values_list("used", flat=True)
    used = found[0] if found else 0
    scale = 1000 if charge.metric == GPU_MS else 1
    assert charge.limit is not None
    return QuotaExceeded(
        limit_name=charge.limit_name,
        label=LIMIT_LABELS[charge.limit_name],
        used=used / scale,
        limit=charge.limit / scale,
        needed=charge.amount / scale,
        resets_at=charge.resets_at,
    )


async def _append(
    conn,
    kind: LedgerKind,
    job_id: str,
    tenant_id: int,
    user_id: int | None,
    model: str,
    images: int,
    gpu_ms: int,
    day: str,
    month: str,
    lane: str = FAST,
) -> None:
    await QuotaLedger.create(
        job_id=job_id,
        tenant_id=tenant_id,
        user_id=user_id,
        model=model,
        kind=kind,
        phase="open" if kind == LedgerKind.RESERVE else "close",
        images=images,
        gpu_ms=gpu_ms,
        day=day,
        month=month,
        lane=lane,
        using_db=conn,
    )


async def audit(tenant: Tenant) -> list[str]:
    """Every way the tenant's counters disagree with its ledger (empty when the books balance): a counter's
    usage must equal the sum of the ledger's changes for its scope and period, and the unfinished-job gauges the
    number of reservations still open."""
    problems: list[str] = []
    entries = await QuotaLedger.filter(tenant_id=tenant.id).values(
        "user_id", "kind", "images", "gpu_ms", "day", "month", "lane"
    )
    expected: dict[tuple[str, str, str], int] = {}
    for e in entries:
        scopes = [TENANT_SCOPE] + ([user_scope(e["user_id"])] if e["user_id"] is not None else [])
        for scope in scopes:
            expected[(scope, IMAGES, e["day"])] = expected.get((scope, IMAGES, e["day"]), 0) + e["images"]
            step = 1 if e["kind"] == LedgerKind.RESERVE else -1
            expected[(scope, IN_FLIGHT, "")] = expected.get((scope, IN_FLIGHT, ""), 0) + step
            if e["lane"] != RELAX:  # relax GPU time is recorded here, not counted against the fast budget
                key = (scope, GPU_MS, e["month"])
                expected[key] = expected.get(key, 0) + e["gpu_ms"]
    counters = await QuotaCounter.filter(tenant_id=tenant.id).values("scope", "metric", "period", "used")
    actual = {(c["scope"], c["metric"], c["period"]): c["used"] for c in counters}
    for key in sorted(set(expected) | set(actual)):
        if expected.get(key, 0) != actual.get(key, 0):
            problems.append(f"{'/'.join(key)}: counter {actual.get(key, 0)}, ledger {expected.get(key, 0)}")
    open_count = await QuotaReservation.filter(tenant_id=tenant.id, state=ReservationState.OPEN).count()
    if open_count != actual.get((TENANT_SCOPE, IN_FLIGHT, ""), 0):
        problems.append(
            f"open reservations {open_count}, in-flight counter {actual.get((TENANT_SCOPE, IN_FLIGHT, ''), 0)}"
        )
    return problems
