"""Tiers: a name, a fair-share weight and default limits, registered in one place and overridable by a TOML file.

The built-in tiers are `free`, `standard` and `priority`. A tier's weight is its share of the GPU while tenants of
several tiers wait: each job advances its tenant's virtual time by cost / weight, so weight 4 gets four turns for
every one of weight 1 (and weight 1 still gets its turn). A tier's limits are what its tenants get unless an admin
overrides them (a chat admin only downwards: `quotas.ceilings`). A tier is *self-service* when a chat admin may put
their own server or workspace on it; any other tier only Atelier's operator assigns (the CLI, or the operator user
ids). Built in, only `free` is self-service.

Relax: a tier's fast budget is its `gpu_seconds_per_month` (GPU seconds per month, per tenant) and, per person,
`gpu_seconds_per_user_per_month`. A tier with ``relax = true`` lets a tenant or person whose fast budget is spent
go on in the relax lane (`jobs.relax`): their jobs run only while no fast job waits, and their GPU time is
recorded but not charged against the fast budget. Without relax, a spent budget refuses as every limit does.
Built in, `free` and `standard` allow relax and `priority` does not need it. ``ATELIER_TIERS_FILE`` names a TOML file whose ``[tiers.NAME]`` tables
replace or add tiers, and whose ``[new_tenants]`` table picks the tier a tenant gets when first seen, per
platform::

    [tiers.free]
    weight = 1
    images_per_day = 50            # leave a limit out for "no limit"
    gpu_seconds_per_month = 3600   # the tenant's fast budget
    gpu_seconds_per_user_per_month = 600   # each person's fast budget
    relax = true                   # past a fast budget, jobs go on in the relax lane (default: false)
    self_service = true            # default: true for a tier named free, false for any other
    [new_tenants]
    default = "free"
    cli = "priority"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

LIMIT_NAMES = (
    "images_per_day",
    "gpu_seconds_per_month",
    "images_per_user_per_day",
    "gpu_seconds_per_user_per_month",
    "queued_jobs_per_user",
    "concurrent_jobs",
)
"""Every limit a tier sets and an admin may override, in the order admission checks them."""

LIMIT_LABELS = {
    "images_per_day": "images per day",
    "gpu_seconds_per_month": "GPU seconds per month",
    "images_per_user_per_day": "images per person per day",
    "gpu_seconds_per_user_per_month": "GPU seconds per person per month",
    "queued_jobs_per_user": "unfinished jobs per person",
    "concurrent_jobs": "unfinished jobs per server",
}


@dataclass(frozen=True)
class Limits:
    """Limits of one tier or tenant; None means no limit. `queued_jobs_per_user` and `concurrent_jobs` count
    the jobs admitted and not yet finished (queued or running), per person and per tenant."""

    images_per_day: int | None = None
    gpu_seconds_per_month: int | None = None
    images_per_user_per_day: int | None = None
    gpu_seconds_per_user_per_month: int | None = None
    queued_jobs_per_user: int | None = None
    concurrent_jobs: int | None = None

    def merged(self, overrides: Mapping[str, int | None]) -> Limits:
        """These limits with every non-None override applied."""
        return Limits(
            **{n: overrides.get(n) if overrides.get(n) is not None else getattr(self, n) for n in LIMIT_NAMES}
        )

    def no_higher_than(self, other: Limits) -> bool:
        """True when no limit here allows more than the same limit of `other` (None: no limit, the most)."""
        return all(_at_most(getattr(self, n), getattr(other, n)) for n in LIMIT_NAMES)


def _at_most(value: int | None, ceiling: int | None) -> bool:
    return ceiling is None or (value is not None and value <= ceiling)


@dataclass(frozen=True)
class Tier:
    name: str
    weight: float
    limits: Limits = field(default_factory=Limits)
    self_service: bool = False  # a chat admin may choose it for their own tenant
    relax: bool = False  # past the fast budget, jobs go to the relax lane instead of being refused

    def no_higher_than(self, other: Tier) -> bool:
        """True when this tier gives nothing `other` does not: no more weight, no higher limit. The relax lane is
        not counted: it runs only on GPU time no fast job wants, so it takes nothing from other tenants, and a
        chat admin may move down from an operator's tier without relax (priority) to free."""
        return self.weight <= other.weight and self.limits.no_higher_than(other.limits)


DEFAULT_TIERS: dict[str, Tier] = {
    "free": Tier(
        "free",
        1.0,
        Limits(
            images_per_day=100,
            gpu_seconds_per_month=7_200,
            images_per_user_per_day=25,
            queued_jobs_per_user=3,
            concurrent_jobs=10,
        ),
        self_service=True,
        relax=True,
    ),
    "standard": Tier(
        "standard",
        2.0,
        Limits(
            images_per_day=500,
            gpu_seconds_per_month=36_000,
            images_per_user_per_day=100,
            queued_jobs_per_user=5,
            concurrent_jobs=25,
        ),
        relax=True,
    ),
    "priority": Tier(
        "priority",
        4.0,
        Limits(
            images_per_day=2_000, gpu_seconds_per_month=180_000, queued_jobs_per_user=10, concurrent_jobs=50
        ),
    ),
}

# The local command line is the machine owner's: it starts on the top tier rather than a community's free one.
DEFAULT_NEW_TENANT_TIERS = {"default": "free", "cli": "priority"}


@dataclass(frozen=True)
class QueueCap:
    """The installation's cap on unfinished (queued or running) jobs of all tenants together, and the share of it
    one tenant may hold (`ATELIER_MAX_QUEUED_JOBS`, `ATELIER_MAX_QUEUED_SHARE`): many throwaway servers on the
    free tier must not be able to fill the queue. Enforced at admission (`quotas.ledger.reserve`)."""

    max_jobs: int = 1000
    max_share: float = 0.25

    def __post_init__(self) -> None:
        if self.max_jobs < 1 or not 0 < self.max_share <= 1:
            raise ValueError(f"a queue cap needs max_jobs >= 1 and 0 < max_share <= 1 (got {self})")

    @property
    def per_tenant(self) -> int:
        """The most unfinished jobs one tenant may hold (at least one)."""
        return max(1, int(self.max_jobs * self.max_share))


@dataclass(frozen=True)
class Tiers:
    """The tiers in force, which one a tenant gets when first seen, and the installation's queue cap."""

    tiers: Mapping[str, Tier] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    new_tenants: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_NEW_TENANT_TIERS))
    queue_cap: QueueCap = field(default_factory=QueueCap)

    def __post_init__(self) -> None:
        for platform, name in self.new_tenants.items():
            if name not in self.tiers:
                raise ValueError(f"new tenants of {platform!r} get tier {name!r}, which is not defined")

    def get(self, name: str) -> Tier:
        """The tier called `name`; an unknown name is a ValueError that lists the known ones."""
        try:
            return self.tiers[name]
        except KeyError:
            raise ValueError(f"unknown tier {name!r}: choose one of {', '.join(self.tiers)}") from None

    def self_service(self) -> list[str]:
        """The tiers a chat admin may choose, in the configured order."""
        return [name for name, tier in self.tiers.items() if tier.self_service]

    def for_new_tenant(self, platform: str) -> str:
        return self.new_tenants.get(platform, self.new_tenants.get("default", next(iter(self.tiers))))

    @classmethod
    def load(cls, path: Path | None, queue_cap: QueueCap | None = None) -> Tiers:
        """The built-in tiers, with those of the TOML file at `path` (if any) replacing or adding to them, under
        `queue_cap` (the default one when None)."""
        queue_cap = queue_cap or QueueCap()
        if path is None:
            return cls(queue_cap=queue_cap)
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read the tiers file {path}: {exc}") from None
        tiers = dict(DEFAULT_TIERS)
        for name, table in data.get("tiers", {}).items():
            tiers[name] = _tier_from_table(name, table, path)
        new_tenants = {**DEFAULT_NEW_TENANT_TIERS, **data.get("new_tenants", {})}
        return cls(tiers, new_tenants, queue_cap)


def _tier_from_table(name: str, table: Mapping[str, object], path: Path) -> Tier:
    allowed = {"weight", "self_service", "relax", *LIMIT_NAMES}
    unknown = set(table) - allowed
    if unknown:
        raise ValueError(
            f"{path}: tier {name!r} has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    weight = table.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise ValueError(f"{path}: tier {name!r} needs a positive weight (got {weight!r})")
    self_service = table.get("self_service", name == "free")
    if not isinstance(self_service, bool):
        raise ValueError(f"{path}: tier {name!r}: self_service is true or false (got {self_service!r})")
    relax = table.get("relax", False)
    if not isinstance(relax, bool):
        raise ValueError(f"{path}: tier {name!r}: relax is true or false (got {relax!r})")
    limits = {n: parse_limit(n, table[n]) for n in LIMIT_NAMES if n in table}
    return Tier(name, float(weight), Limits(**limits), self_service, relax)


def parse_limit(name: str, value: object) -> int:
    """A limit as a whole number ≥ 0, from an int or its decimal text; anything else is a ValueError naming it."""
    if name not in LIMIT_NAMES:
        raise ValueError(f"unknown limit {name!r}: choose one of {', '.join(LIMIT_NAMES)}")
    label = name.replace("_", "-")
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{label} must be a whole number of 0 or more (got {value!r})")
    if value < 0:
        raise ValueError(f"{label} must be 0 or more (got {value})")
    return value
