"""The prompt's words: the fast split before each acknowledgement reads every prompt as shlex does."""

from __future__ import annotations

import shlex

from hypothesis import given, settings
from hypothesis import strategies as st

from bots.commands import parse_prompt, prompt_words

# Quotes, backslashes, the four characters shlex splits on and whitespace it does not (no-break, ideographic).
PIECES = st.sampled_from(
    ["a", "b", "--ar", "16:9", " ", "\t", "\n", "\r", "'", '"', "\\", "\u00a0", "\u3000", "#"]
)


def shlex_words(text: str) -> list[str] | str:
    try:
        return shlex.split(text)
    except ValueError:
        return "unreadable"


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, max_size=14).map("".join))
def test_prompt_words_are_shlex_words(text: str) -> None:
    try:
        words: list[str] | str = prompt_words(text)
    except ValueError:
        words = "unreadable"
    assert words == shlex_words(text)


def test_a_quoted_phrase_stays_one_word_and_a_plain_prompt_splits_on_runs_of_space() -> None:
    assert parse_prompt('a "red fox" --ar 16:9').options["aspect"] == "16:9"
    assert parse_prompt("a  red\tfox \n at dusk").prompt == "a red fox at dusk"
    assert parse_prompt("café\u00a0noir").prompt == "café\u00a0noir"  # a no-break space is not a separator
