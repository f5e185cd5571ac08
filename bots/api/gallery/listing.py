"""What a gallery shows: a tenant's images newest first, searched and filtered, a page at a time; and which of
them the safety filter keeps out of sight.

Search is a case-insensitive substring of the prompt (`spec.prompt` of the image's job), on PostgreSQL with
ILIKE over `spec->>'prompt'`, on SQLite over `json_extract` (whose case folding covers ASCII letters only).
`%` and `_` in a search are literal. Filters: the model, the member who asked, and a date range (UTC days,
both ends included). Pages are `PAGE_SIZE` images by offset, which is plain and bookmarkable; a page past the
end is empty, not an error.

The safety filter, as the chat front-ends and the API apply it (bots/discord/safety.py, bots/api/safety.py): while the
tenant's `safety` preference is on (the default), an image the safety checker flagged, or one made from a
flagged image, is withheld. A gallery is no age-restricted channel, so it is never shown there, not even
blurred: its tile says it was withheld, its bytes are not served, and it offers no "same again". With the
preference off it is shown like any other. The preference is read on every request, so a change applies at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from tortoise import connections
from tortoise.expressions import RawSQL, Subquery

from bots.api.safety import source_flagged
from storage.models import Image, Job, Tenant, User
from storage.preferences import preferences_of

PAGE_SIZE = 24
MAX_QUERY_CHARS = 200
_PROMPT_SQL = {"postgres": "spec->>'prompt'", "sqlite": "json_extract(spec, '$.prompt')"}


@dataclass(frozen=True)
class Filters:
    q: str = ""
    model: str = ""
    user: int | None = None  # users.id
    since: date | None = None
    until: date | None = None
    page: int = 1

    @classmethod
    def from_query(cls, query) -> tuple[Filters, list[str]]:
        """Filters from a request's query string, and a message for each value that was ignored as invalid."""
        problems: list[str] = []
        since = _day(query.get("from", ""), "from", problems)
        until = _day(query.get("to", ""), "to", problems)
        user = number(query.get("user", ""))
        if query.get("user") and user is None:
            problems.append("user must be chosen from the list")
        return cls(
            q=_printable(query.get("q", ""))[:MAX_QUERY_CHARS],
            model=_printable(query.get("model", ""))[:64],
            user=user,
            since=since,
            until=until,
            page=min(max(1, number(query.get("page", "")) or 1), 100_000),
        ), problems

    def query(self, **changes: object) -> dict[str, str]:
        """These filters (with `changes`) as query parameters, leaving out empty ones: for links."""
        values = {
            "q": self.q,
            "model": self.model,
            "user": "" if self.user is None else str(self.user),
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
            "page": str(self.page) if self.page > 1 else "",
        }
        values.update({k: "" if v is None else str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v and not (k == "page" and v == "1")}


def _printable(text: str) -> str:
    """`text` without control characters (PostgreSQL refuses a NUL in a parameter), stripped."""
    return "".join(c for c in text if c.isprintable()).strip()


def number(text: str) -> int | None:
    """A non-negative whole number of at most 12 ASCII digits (str.isdigit also takes '²', which int refuses)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None


def _day(text: str, name: str, problems: list[str]) -> date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        problems.append(f"'{name}' must be a date like 2026-12-31")
        return None
    return day if date.min < day < date.max else None  # the ends would overflow a day's bounds


@dataclass(frozen=True)
class Page:
    images: list[Image]  # with .job and .job.user fetched
    hidden: set[int]  # ids of the images the safety filter withholds
    total: int
    number: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


async def gallery_page(tenant: Tenant, filters: Filters) -> Page:
    query = Image.filter(job__tenant_id=tenant.id)
    if filters.q:
        dialect = connections.get("default").capabilities.dialect
        prompt = RawSQL(_PROMPT_SQL["postgres" if dialect == "postgres" else "sqlite"])
        matching = Job.filter(tenant_id=tenant.id).annotate(prompt=prompt).filter(prompt__icontains=filters.q)
        query = query.filter(job_id__in=Subquery(matching.values("id")))
    if filters.model:
        query = query.filter(job__model=filters.model)
    if filters.user is not None:
        query = query.filter(job__user_id=filters.user)
    if filters.since:
        query = query.filter(created_at__gte=datetime.combine(filters.since, time(), UTC))
    if filters.until:
        query = query.filter(created_at__lt=datetime.combine(filters.until + timedelta(days=1), time(), UTC))
    total = await query.count()
    offset = (filters.page - 1) * PAGE_SIZE
    images = (
        await query.order_by("-created_at", "-id")
        .offset(offset)
        .limit(PAGE_SIZE)
        .select_related("job", "job__user")
        if offset < total
        else []
    )
    return Page(images, await withheld(tenant, images), total, filters.page)


async def withheld(tenant: Tenant, images: list[Image]) -> set[int]:
    """Ids of `images` (of `tenant`, with `.job` fetched) that the safety filter keeps out of sight."""
    if not images or not (await preferences_of(tenant)).safety:
        return set()
    return {image.id for image in images if image.flagged or await source_flagged(image.job.spec)}


async def choices(tenant: Tenant) -> tuple[list[str], list[User]]:
    """The models and the members that the tenant's jobs name, for the filter form."""
    models = (
        await Job.filter(tenant_id=tenant.id)
        .exclude(model="")
        .distinct()
        .order_by("model")
        .values_list("model", flat=True)
    )
    users = await User.filter(tenant_id=tenant.id, jobs__id__isnull=False).distinct().order_by("name", "id")
    return list(models), users
