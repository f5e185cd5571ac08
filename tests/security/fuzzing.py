"""The fuzz suite's bookkeeping: how many cases to run, and the tally of what each target did with them.

`ATELIER_FUZZ_COUNT` sets the size of a run: unset, the CI size (300 commands per category, 50 images and 50
zips: repeatable, derandomized); `full`, the issue's size (10,000 commands per category, 1,000 images and 1,000
zips); a number N, N commands per category and N/10 files.

A target's answer is one of three: a value (accepted), a refusal of the project's own (a ValueError subclass
whose message is one line naming the problem), or anything else: a crash. `attempt` sorts them and checks the
refusal's message; the tally is printed per category at the end of the run (`pytest -s`).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

CI_COMMANDS = 300
FULL_COMMANDS = 10_000


def counts() -> tuple[int, int]:
    """(commands per category, files per category) for this run, from `ATELIER_FUZZ_COUNT`."""
    raw = os.environ.get("ATELIER_FUZZ_COUNT", "").strip().lower()
    if raw == "full":
        return FULL_COMMANDS, FULL_COMMANDS // 10
    commands = int(raw) if raw else CI_COMMANDS
    return commands, max(commands // 10, 50 if not raw else 1)


COMMANDS, FILES = counts()


def fuzz_settings(examples: int) -> settings:
    """Exactly-this-many examples, repeatable (derandomized, no example database), no time limit per case."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


MAX_REFUSAL_CHARS = 1900
"""A refusal must fit one Discord message (2,000 characters) with the bot's prefix: a longer one fails to send."""

INTERNALS = re.compile(
    r"Traceback|File \"|<[\w.]+ object at 0x|invalid literal for|could not convert|has no attribute"
    r"|object is not|unsupported operand|codec can't|NoneType|Exceeds the limit|validation error",
)
"""Text of Python's own errors, or a repr of an object: not a message that names the user's problem."""


class Tally:
    """Cases, refusals, acceptances and crashes per category; a crash is re-raised for hypothesis to shrink."""

    def __init__(self) -> None:
        self.rows: dict[str, Counter[str]] = {}
        self.enqueued: dict[str, int] = {}

    def row(self, category: str) -> Counter[str]:
        return self.rows.setdefault(category, Counter())

    def attempt(
        self, category: str, call: Callable[[], T], refusals: tuple[type[BaseException], ...] = (ValueError,)
    ) -> T | None:
        """`call()`'s value (counted accepted), or None for a refusal of one of `refusals` whose message passes
        `check_refusal` (counted refused); any other exception is counted as a crash and raised."""
        row = self.row(category)
        row["cases"] += 1
        try:
            value = call()
        except refusals as exc:
            try:
                check_refusal(exc)
            except AssertionError:
                row["crashes"] += 1
                raise
            row["refused"] += 1
            return None
        except Exception:
            row["crashes"] += 1
            raise
        row["accepted"] += 1
        return value

    def accepted_invalid(self, category: str) -> None:
        """Count a value that should have been refused (the caller then fails the test)."""
        self.row(category)["crashes"] += 1

    def summary(self) -> str:
        lines = [f"{'category':<28}{'cases':>8}{'refused':>9}{'accepted':>10}{'crashes':>9}{'enqueued':>10}"]
        for name, row in self.rows.items():
            enqueued = self.enqueued.get(name, 0)
            lines.append(
                f"{name:<28}{row['cases']:>8}{row['refused']:>9}{row['accepted']:>10}{row['crashes']:>9}"
                f"{enqueued:>10}"
            )
        return "\n".join(lines)


def check_refusal(exc: BaseException, *, lines: int = 1) -> str:
    """The refusal's message, asserted to be non-empty, at most `lines` lines, short enough for a chat message,
    and free of Python's own error text."""
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} with an empty message"
    assert "\r" not in message and len(message.split("\n")) <= lines, f"not one line: {message!r}"
    assert len(message) <= MAX_REFUSAL_CHARS * lines, f"{len(message)} characters: {message[:200]!r}…"
    assert not INTERNALS.search(message), f"Python's own error text: {message!r}"
    return message
