"""What people type, checked for characters nothing downstream can take: control characters and lone surrogates.

PostgreSQL refuses a NUL in text and jsonb, and UTF-8 cannot encode a lone surrogate (which JSON from a chat
platform can carry), so either would fail a job's insert after the user was told it was queued; other control
characters (escape sequences, a carriage return, a bell) mean nothing to a model and garble logs and messages.

Decision: they are refused, not stripped. A prompt is what the user meant the model to read, and removing
characters silently would make two different prompts the same job; a refusal names the character and where it
is, so the user can fix it. Newline and tab are allowed in prompts and captions (multi-line messages have them,
and they are whitespace to a tokenizer); names (LoRA names, triggers, file names in a zip) allow none.
"""

from __future__ import annotations

import unicodedata

PROMPT_WHITESPACE = "\n\t"
"""The control characters a prompt may hold: both are whitespace to a tokenizer."""


def control_character(text: str, *, allowed: str = "") -> str | None:
    """The first control character (Unicode category Cc) or lone surrogate in `text` not in `allowed`, described
    as `U+0000 at character 5`; None when there is none."""
    for index, char in enumerate(text):
        if char not in allowed and unicodedata.category(char) in ("Cc", "Cs"):
            return f"U+{ord(char):04X} at character {index + 1}"
    return None


def check_text(what: str, text: str, *, allowed: str = PROMPT_WHITESPACE) -> str:
    """`text` unchanged, or ValueError naming `what` and the first character it may not hold."""
    if (bad := control_character(text, allowed=allowed)) is not None:
        raise ValueError(f"the {what} holds a control character ({bad}): remove it")
    return text


def shown(text: str, limit: int = 60) -> str:
    """`text` quoted and escaped for a one-line message (no newline gets through), cut to `limit` characters: a
    refusal that echoed a 6,000-character value whole would not fit a chat message."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def check_name(what: str, text: str) -> str:
    """`check_text` for a name: no control character at all, newline and tab included."""
    return check_text(what, text, allowed="")
