"""Refusals: the expected ways a request is turned away, each with a message written for the person who asked.

Front-ends catch `QuotaRefused` and show `str(exc)` as it is; nothing was reserved or enqueued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class QuotaRefused(Exception):
    """Any refusal at admission; `str(exc)` is the user-facing message."""


@dataclass
class QuotaExceeded(QuotaRefused):
    """A limit would be passed: which one, the usage now, the limit, what the request needs and when it resets
    (`resets_at` in the tenant's timezone; None for limits on unfinished jobs, which free up as jobs finish)."""

    limit_name: str
    label: str
    used: float
    limit: float
    needed: float
    resets_at: datetime | None

    def __str__(self) -> str:
        need = f"; this request needs {_amount(self.needed)}" if self.needed != 1 else ""
        if self.resets_at is not None:
            when = f"it resets at {self.resets_at:%Y-%m-%d %H:%M} {self.resets_at.tzinfo}"
        else:
            when = "it frees up as those jobs finish"
        return (
            f"Limit reached: {self.label} ({_amount(self.used)} of {_amount(self.limit)} used{need}); {when}."
        )


@dataclass
class QueueBusy(QuotaRefused):
    """The installation's queue is full, or this tenant holds its whole share of it (`quotas.tiers.QueueCap`);
    `waiting` is the number of unfinished jobs of all tenants."""

    waiting: int

    def __str__(self) -> str:
        return f"Atelier is busy right now ({self.waiting} jobs waiting); try again in a few minutes."


@dataclass
class RelaxNotAllowed(QuotaRefused):
    """The relax lane was asked for (`--relax`, a setting, the API's `lane`) on a tier that has none."""

    tier: str

    def __str__(self) -> str:
        return (
            f"The relax lane is not available on the {self.tier} tier here; ask without --relax "
            "(or set your lane back to automatic in /settings)."
        )


class TenantPaused(QuotaRefused):
    def __str__(self) -> str:
        return "An admin has paused image requests here; try again once they resume them."


class UserBanned(QuotaRefused):
    def __str__(self) -> str:
        return "You can't make image requests here: an admin has blocked it."


def _amount(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.1f}"
