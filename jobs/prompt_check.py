"""The prompt check: the first stage of safety, run in `jobs.queue.enqueue` before anything is reserved,
recorded or queued, so every front-end (Discord, Slack, the API, the CLI) gets it and a refusal costs nothing.

A prompt (and its negative prompt) is refused by the first rule it breaks, in this order, and the refusal names
the rule:
1. the built-in list (`BUILTIN`): a few patterns no server may allow;
2. the server's own words and patterns (`/atelier safety words add|remove|list`, `atelier admin safety-words`):
   a word matches whole, any case; a pattern is a Python regular expression searched in the prompt, any case;
3. the prompt classifier (the `prompt-safety` role, engine.classifiers), unless `ATELIER_PROMPT_CLASSIFIER=off`:
   a score at or above its preset's threshold refuses.

Where the classifier runs: on the workers, never in a front-end. The classifier needs torch and transformers
(hundreds of MB, and a real model's CPU time per prompt), which the chat bots must not carry (issue 10: a bot
stays near 150 MB and acknowledges within 100 ms). So a front-end process (`atelier.runtime.Runtime.open`
installs a `RemoteClassifier` by default) pushes `{id, text, reply_to, expires}` on the Redis list `REQUESTS` and
awaits the verdict on its own reply list (`atelier:prompt-check:answers:<uuid>`), which one listener task per
process pops (BLPOP) for every check in flight. Each image worker (`jobs.worker.create_worker`) runs `serve`: it
pops requests (each is popped by one worker only), scores them with its local `PromptClassifier` on a thread of
its own (the event loop and the GPU jobs go on), and pushes `{id, score, threshold, preset}` to the reply list,
which expires soon after. The threshold is the worker's preset's: the workers' `ATELIER_PROMPT_CLASSIFIER`
decides which classifier scores; a front-end's setting only turns the remote check off (`off`: no request is
sent at all).

Fail-open, documented and counted: when no worker serves prompt checks (none is listed in `SERVERS`: each
`serve` lists itself there, refreshed every `POP_TIMEOUT_S`, for `PRESENCE_S`), at once; when the workers serving
do not answer within `ATELIER_PROMPT_CHECK_WAIT_S` (5 s by default); or when a worker's classifier cannot load
(no weights, no network; logged once by that worker): the word lists alone apply and the request goes on. A
missing model or a stopped fleet must not stop every request, nor hold each one for the whole bound. A
front-end logs one warning per outage (until a worker answers again) and counts every unanswered check in
`atelier_prompt_checks_unanswered_total` (docs/metrics.md). A request carries its expiry (`expires`, the wall
clock at which its front-end stops waiting): a worker that pops it later drops it unscored, so a worker that
comes up after an outage does not work through a backlog nobody waits for; the request list itself expires a
little after its last push.

The command line (`atelier imagine` and the other job commands, atelier.jobrun) checks here, in its own process,
when no worker's heartbeat is seen: it is about to run the job itself, torch included (`check_here`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from quotas.errors import QuotaRefused
from storage.moderation import SafetyWord

log = logging.getLogger(__name__)

REQUESTS = "atelier:prompt-check:requests"
ANSWERS_PREFIX = "atelier:prompt-check:answers:"
DEFAULT_WAIT_S = 5.0  # ATELIER_PROMPT_CHECK_WAIT_S
ANSWER_TTL_S = 30  # a reply list nobody pops (its front-end exited) goes away after this
POP_TIMEOUT_S = 1  # a listener's or a worker's BLPOP returns this often, so it notices it is stopped
SERVERS = "atelier:prompt-check:servers"  # sorted set: serving worker id -> listed until (epoch s)
PRESENCE_S = 5.0  # how long one listing lasts; `serve` renews it every POP_TIMEOUT_S while it runs

BUILTIN = (
    r"\b(loli|lolicon|shota|shotacon)\b",
    r"\b(child|kid|minor|underage|preteen)s?\b.{0,40}\b(nude|naked|porn|sexual|nsfw)\b",
    r"\b(nude|naked|porn|sexual|nsfw)\b.{0,40}\b(child|kid|minor|underage|preteen)s?\b",
)


class PromptRefused(QuotaRefused):
    """A prompt the check refuses; `str(exc)` names the rule. A QuotaRefused, so every front-end already shows
    it as it is, with nothing reserved or queued."""


class PromptClassifier:
    """The prompt-safety classifier preset on the CPU, loaded on first use on its own thread: what a worker (or
    a command running its own job) scores prompts with."""

    def __init__(self, preset: Any, cache_dir: Path) -> None:
        self.preset, self.cache_dir = preset, Path(cache_dir)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="prompt-check")
        self._cache: Any = None
        self._broken = False

    async def verdict(self, text: str) -> tuple[float, float] | None:
        """(score, threshold) of the prompt, or None when the classifier could not load (logged once)."""
        if self._broken:
            return None
        try:
            score = await asyncio.get_running_loop().run_in_executor(self._thread, self._score, text)
        except Exception:
            log.exception("the prompt classifier %s could not run; word lists alone apply", self.preset.name)
            self._broken = True
            return None
        return score, self.preset.safety_threshold

    def _score(self, text: str) -> float:
        import torch

        from engine.cache import PipelineCache
        from engine.classifiers import text_score

        if self._cache is None:
            import transformers

            transformers.utils.logging.disable_progress_bar()  # a CLI's or worker's stderr is for messages
            self._cache = PipelineCache(
                cache_dir=self.cache_dir, device=torch.device("cpu"), dtype=torch.float32
            )
        return text_score(self._cache, self.preset, text)


class RemoteClassifier:
    """A front-end's classifier: asks the workers (see the module doc). One listener task per process pops the
    process's reply list and resolves the checks in flight by id; `wait_s` bounds each check."""

    def __init__(self, redis: Any, wait_s: float = DEFAULT_WAIT_S) -> None:
        self.redis, self.wait_s = redis, wait_s
        self.reply_to = ANSWERS_PREFIX + uuid.uuid4().hex
        self._pending: dict[str, asyncio.Future] = {}
        self._listener: asyncio.Task | None = None
        self._outage = False  # warned since the last answer

    async def verdict(self, text: str) -> tuple[float, float] | None:
        """The workers' (score, threshold) of the prompt; None when none answered within `wait_s` (warned once
        per outage, counted) or the answering worker's classifier could not load."""
        if not await self._served():
            self._unanswered("no worker serves prompt checks")
            return None
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="prompt-check answers")
        request_id = uuid.uuid4().hex
        answer = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        request = {
            "id": request_id,
            "text": text,
            "reply_to": self.reply_to,
            "expires": time.time() + self.wait_s,
        }
        try:
            async with asyncio.timeout(self.wait_s):
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.rpush(REQUESTS, json.dumps(request))
                    pipe.expire(REQUESTS, max(1, round(2 * self.wait_s)))
                    await pipe.execute()
                result = await answer
        except TimeoutError:
            self._unanswered(f"no worker answered a prompt check within {self.wait_s:.1f} s")
            return None
        finally:
            self._pending.pop(request_id, None)
        if self._outage:
            log.info("workers answer prompt checks again")
            self._outage = False
        if result.get("score") is None:
            return None  # the worker's classifier could not load: it logged why
        return float(result["score"]), float(result["threshold"])

    async def _served(self) -> bool:
        """Whether some worker lists itself as serving prompt checks now (a Redis error: ask anyway, bounded)."""
        try:
            return await self.redis.zcount(SERVERS, time.time(), "+inf") > 0
        except Exception:  # the request below meets the same outage and times out, failing open
            return True

    def _unanswered(self, why: str) -> None:
        from jobs import metrics

        metrics.PROMPT_CHECKS_UNANSWERED.inc()
        if not self._outage:
            log.warning("%s; the word lists alone apply until one does", why)
        self._outage = True

    async def _listen(self) -> None:
        """Pop this process's answers until closed, resolving each pending check by id. A Redis error is retried
        each `POP_TIMEOUT_S`: the checks waiting meanwhile time out and fail open."""
        while True:
            try:
                popped = await self.redis.blpop([self.reply_to], timeout=POP_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the listener must outlive a Redis outage
                log.debug("prompt-check answers: %s", exc)
                await asyncio.sleep(POP_TIMEOUT_S)
                continue
            if popped is None:
                continue
            try:
                answer = json.loads(popped[1])
                future = self._pending.get(answer["id"])
            except (ValueError, KeyError, TypeError):
                log.warning("dropped a malformed prompt-check answer")
                continue
            if future is not None and not future.done():
                future.set_result(answer)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None


async def serve(redis: Any, classifier: PromptClassifier) -> None:
    """A worker's consumer of prompt checks, until cancelled (see the module doc): pop a request, drop it if it
    expired, score it on the classifier's own thread, push the answer to its reply list with a short expiry. A
    Redis outage is logged once and waited out. The classifier loads first, before any request is popped, so the
    first prompt is not the one that waits for the weights; the worker lists itself in `SERVERS` from the start
    (a front-end waits for it meanwhile, within its bound) until it stops."""
    server = uuid.uuid4().hex
    listing = asyncio.create_task(_keep_listed(redis, server), name="prompt-check listing")
    try:
        await classifier.verdict("warm-up")
        await _answer_requests(redis, classifier)
    finally:
        listing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listing
        with contextlib.suppress(Exception):
            await redis.zrem(SERVERS, server)


async def advertise(redis: Any, server: str) -> None:
    """List `server` in `SERVERS` for `PRESENCE_S` from now, dropping listings that lapsed (a killed worker's)."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(SERVERS, {server: now + PRESENCE_S})
        pipe.zremrangebyscore(SERVERS, "-inf", now)
        pipe.expire(SERVERS, round(2 * PRESENCE_S))
        await pipe.execute()


async def _keep_listed(redis: Any, server: str) -> None:
    while True:
        with contextlib.suppress(Exception):  # an outage: the listing lapses, front-ends fail open meanwhile
            await advertise(redis, server)
        await asyncio.sleep(POP_TIMEOUT_S)


async def _answer_requests(redis: Any, classifier: PromptClassifier) -> None:
    failing = False
    while True:
        try:
            popped = await redis.blpop([REQUESTS], timeout=POP_TIMEOUT_S)
            if failing:
                log.info("Redis answers again; prompt checks resume")
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the consumer must outlive a Redis outage
            if not failing:
                log.warning("cannot read prompt checks (%s); retrying every %d s", exc, POP_TIMEOUT_S)
            failing = True
            await asyncio.sleep(POP_TIMEOUT_S)
            continue
        if popped is None:
            continue
        try:
            request = json.loads(popped[1])
            request_id, text, reply_to = request["id"], request["text"], request["reply_to"]
            expires = float(request["expires"])
        except (ValueError, KeyError, TypeError):
            log.warning("dropped a malformed prompt-check request")
            continue
        if time.time() > expires or not str(reply_to).startswith(ANSWERS_PREFIX):
            continue  # nobody waits for it any more (or it names no reply list of ours)
        verdict = await classifier.verdict(str(text))
        if time.time() > expires:
            continue
        score, threshold = verdict if verdict is not None else (None, None)
        answer = {"id": request_id, "score": score, "threshold": threshold, "preset": classifier.preset.name}
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.rpush(reply_to, json.dumps(answer))
                pipe.expire(reply_to, ANSWER_TTL_S)
                await pipe.execute()
        except Exception as exc:  # the front-end times out and fails open
            log.warning("cannot answer a prompt check (%s)", exc)


class _Installed:
    """This process's prompt classifiers, set by the composition root (atelier.runtime): `classifier` is the one
    `check` asks (remote in a front-end, None when off); `local` is the one a worker serves with, or a command
    checks with when no worker serves (`check_here`)."""

    classifier: PromptClassifier | RemoteClassifier | None = None
    local: PromptClassifier | None = None


def configure(
    classifier: PromptClassifier | RemoteClassifier | None, local: PromptClassifier | None = None
) -> None:
    _Installed.classifier, _Installed.local = classifier, local


def local_classifier() -> PromptClassifier | None:
    """The classifier a worker serves prompt checks with (None: `ATELIER_PROMPT_CLASSIFIER=off`)."""
    return _Installed.local


def check_here() -> None:
    """Check prompts in this process from now on (a command about to run its own job: no worker serves)."""
    if _Installed.classifier is not None and _Installed.local is not None:
        _Installed.classifier = _Installed.local


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
    verdict = await classifier.verdict(prompt)
    if verdict is not None and verdict[0] >= verdict[1]:
        score, threshold = verdict
        raise PromptRefused(f"Refused by the prompt classifier (score {score:.2f} ≥ {threshold:.2f}).")
