"""The prompt check: the first stage of safety, run in `jobs.queue.enqueue` before anything is reserved,
recorded or queued, so every front-end (Discord, Slack, the API, the CLI) gets it and a refusal costs nothing.

A prompt (and its negative prompt) is refused by the first rule it breaks, in this order, and the refusal names
the rule:
1. the built-in list (`BUILTIN`): a few patterns no server may allow;
2. the server's own words and patterns (`/atelier safety words add|remove|list`, `atelier admin safety-words`):
   a word matches whole, any case; a pattern is a Python regular expression searched in the prompt, any case;
3. the prompt classifier (the `prompt-safety` role, engine.classifiers), when this process has one
   (`configure`, done by `atelier.runtime.Runtime.open` unless `ATELIER_PROMPT_CLASSIFIER=off`): a score at or
   above its preset's threshold refuses.

The classifier runs in the front-end's process, on a thread of its own (a short prompt costs milliseconds on a
CPU), and loads on first use. If it cannot load (no weights, no network), the error is logged once and the word
lists alone apply: a missing model must not stop every request.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from quotas.errors import QuotaRefused
from storage.moderation import SafetyWord

log = logging.getLogger(__name__)

BUILTIN = (
    r"\b(loli|lolicon|shota|shotacon)\b",
    r"\b(child|kid|minor|underage|preteen)s?\b.{0,40}\b(nude|naked|porn|sexual|nsfw)\b",
    r"\b(nude|naked|porn|sexual|nsfw)\b.{0,40}\b(child|kid|minor|underage|preteen)s?\b",
)


class PromptRefused(QuotaRefused):
    """A prompt the check refuses; `str(exc)` names the rule. A QuotaRefused, so every front-end already shows
    it as it is, with nothing reserved or queued."""


class PromptClassifier:
    """The prompt-safety classifier preset on the CPU, loaded on first use on its own thread."""

    def __init__(self, preset: Any, cache_dir: Path) -> None:
        self.preset, self.cache_dir = preset, Path(cache_dir)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="prompt-check")
        self._cache: Any = None
        self._broken = False

    async def score(self, text: str) -> float | None:
        """The prompt's score, or None when the classifier could not load (logged once)."""
        if self._broken:
            return None
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._score, text)
        except Exception:
            log.exception("the prompt classifier %s could not run; word lists alone apply", self.preset.name)
            self._broken = True
            return None

    def _score(self, text: str) -> float:
        import torch

        from engine.cache import PipelineCache
        from engine.classifiers import text_score

        if self._cache is None:
            import transformers

            transformers.utils.logging.disable_progress_bar()  # a CLI's or bot's stderr is for messages
            self._cache = PipelineCache(
                cache_dir=self.cache_dir, device=torch.device("cpu"), dtype=torch.float32
            )
        return text_score(self._cache, self.preset, text)


class _Installed:
    """This process's classifier: set once by the composition root (a front-end has no engine of its own)."""

    classifier: PromptClassifier | None = None


def configure(classifier: PromptClassifier | None) -> None:
    _Installed.classifier = classifier


def _matches(text: str, *, pattern: bool, prompt: str) -> bool:
    expression = text if pattern else rf"(?<!\w){re.escape(text)}(?!\w)"
    return re.search(expression, prompt, re.IGNORECASE) is not None


async def check(spec: Any, tenant_id: int | None) -> None:
    """Raise PromptRefused naming the first rule the spec's prompt breaks (see the module doc)."""
    texts = [t for t in (getattr(spec, "prompt", None), getattr(spec, "negative", None)) if t]
    if not texts:
        return
    prompt = "\n".join(texts)
    for expression in BUILTIN:
        if re.search(expression, prompt, re.IGNORECASE):
            raise PromptRefused("Refused by Atelier's built-in prompt list (content involving minors).")
    if tenant_id is not None:
        for word in await SafetyWord.filter(tenant_id=tenant_id).order_by("id"):
            if _matches(word.text, pattern=word.pattern, prompt=prompt):
                kind = "pattern" if word.pattern else "word list"
                raise PromptRefused(f"Refused by this server's {kind}: {word.text!r}.")
    classifier = _Installed.classifier
    if classifier is None:
        return
    score = await classifier.score(prompt)
    threshold = classifier.preset.safety_threshold
    if score is not None and score >= threshold:
        raise PromptRefused(f"Refused by the prompt classifier (score {score:.2f} ≥ {threshold:.2f}).")
