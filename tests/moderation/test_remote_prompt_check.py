"""The prompt classifier runs on the workers, not in the front-ends (issue 17, item 2; issue 10's bot budget): a
front-end sends each prompt to the workers over Redis and waits a bounded time for the verdict, before anything
is queued. A real worker process refuses a command's prompt naming the classifier; with no worker serving, a
request is admitted on the word lists alone at once, and with one listed that does not answer, within the
bound, counted and warned about once; a request nobody
waits for any more is dropped unscored; `off` sends nothing; and a front-end that checks a prompt never imports
torch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from atelier.runtime import Runtime
from jobs import prompt_check
from jobs.prompt_check import PromptRefused
from jobs.queue import enqueue
from jobs.specs import ReplyTarget, imagine_spec
from storage.models import Job, get_or_create_tenant
from tests.support import atelier_env, redis_url, run_atelier, service_env, worker_process

CLI = ReplyTarget(platform="cli")
UNANSWERED = "atelier_prompt_checks_unanswered_total"


def _unanswered() -> float:
    return REGISTRY.get_sample_value(UNANSWERED) or 0.0


async def _submit(runtime: Runtime, prompt: str, request_id: str):
    tenant = await get_or_create_tenant("discord", "81")
    spec = imagine_spec(runtime.registry, prompt=prompt, model="tiny", tiny=True)
    return await enqueue(
        runtime.redis,
        spec,
        request_id=request_id,
        reply_target=CLI,
        queue_name=runtime.settings.queue_name,
        tenant=tenant,
    )


def _env(runtime: Runtime, root: Path, **extra: str) -> dict[str, str]:
    s = runtime.settings
    env = service_env(
        root,
        models_dir=s.models_dir,
        redis_url=s.redis_url,
        database_url=s.database_url,
        queue_name=s.queue_name,
    )
    return {**env, **extra}


async def test_a_worker_process_refuses_a_commands_prompt_naming_the_classifier(
    runtime: Runtime, tmp_path: Path
) -> None:
    # The worker's classifier is the strict one; the command's own setting is the default tiny classifier, which
    # would let the prompt through: the refusal can only come from the worker.
    worker_env = _env(runtime, tmp_path, ATELIER_PROMPT_CLASSIFIER="tiny-nsfw-prompt-strict")
    with worker_process(worker_env, tmp_path, runtime.settings.queue_name):
        result = await asyncio.to_thread(
            run_atelier,
            "imagine",
            "a lighthouse at dusk",
            "--model",
            "tiny",
            cwd=tmp_path,
            env=_env(runtime, tmp_path),
        )
    assert result.returncode != 0, result.stdout
    assert "Refused by the prompt classifier (score 1.50 ≥ 0.60)." in result.stderr, result.stderr
    assert await Job.all().count() == 0
    assert await runtime.redis.zcard(runtime.settings.queue_name) == 0


@pytest.mark.parametrize("prompt_check_wait_s", [0.5])
async def test_unanswered_checks_are_admitted_on_word_lists_within_the_bound(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jobs.prompt_check")
    before = _unanswered()
    # No worker serves prompt checks: admitted at once on the word lists, nothing sent, counted.
    for n in range(2):
        started = time.monotonic()
        assert (await _submit(runtime, "a lighthouse at dusk", f"t:unserved:{n}")).created
        assert time.monotonic() - started < 0.5
    assert _unanswered() == before + 2
    assert await runtime.redis.llen(prompt_check.REQUESTS) == 0
    with pytest.raises(PromptRefused, match="built-in prompt list"):
        await _submit(runtime, "a loli", "t:unserved:builtin")  # the word lists still apply

    # A worker listed as serving that does not answer (hung, or busy past the bound): admitted after the bound.
    await prompt_check.advertise(runtime.redis, "hung-worker")
    started = time.monotonic()
    assert (await _submit(runtime, "a lighthouse at dusk", "t:unanswered")).created
    assert 0.5 <= time.monotonic() - started < 3.0
    assert _unanswered() == before + 3
    warnings = [r for r in caplog.records if "the word lists alone apply" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per outage, not per request

    # The request nobody waits for any more is still on the list: a worker that comes up now drops it
    # unscored, and answers the next one, which is admitted with no further count.
    assert await runtime.redis.llen(prompt_check.REQUESTS) == 1
    classifier = prompt_check.local_classifier()
    await classifier.verdict("load it before the 0.5 s bound starts")
    task = asyncio.create_task(prompt_check.serve(runtime.redis, classifier))
    try:
        assert (await _submit(runtime, "a lighthouse at dawn", "t:answered")).created
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert _unanswered() == before + 3
    assert await runtime.redis.llen(prompt_check.REQUESTS) == 0
    # A worker that stops takes itself off the list, or its listing lapses within PRESENCE_S (a removal that
    # meets a connection cancelled mid-command is given up): only the hung one may be left.
    deadline = time.monotonic() + prompt_check.PRESENCE_S + 5
    while set(await runtime.redis.zrange(prompt_check.SERVERS, 0, -1)) - {b"hung-worker"}:
        assert time.monotonic() < deadline, await runtime.redis.zrange(prompt_check.SERVERS, 0, -1)
        await asyncio.sleep(0.1)


async def test_an_expired_request_is_dropped_unscored(runtime: Runtime) -> None:
    reply_to = prompt_check.ANSWERS_PREFIX + "test"
    stale = {"id": "stale", "text": "a fox", "reply_to": reply_to, "expires": time.time() - 1}
    fresh = {"id": "fresh", "text": "a fox", "reply_to": reply_to, "expires": time.time() + 60}
    await runtime.redis.rpush(prompt_check.REQUESTS, json.dumps(stale), json.dumps(fresh))
    task = asyncio.create_task(prompt_check.serve(runtime.redis, prompt_check.local_classifier()))
    try:
        _, raw = await runtime.redis.blpop([reply_to], timeout=60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    answer = json.loads(raw)
    assert answer["id"] == "fresh"  # first in, so the stale one, had it been answered, would have come first
    assert answer["score"] == pytest.approx(0.5) and answer["threshold"] == pytest.approx(0.6)
    assert await runtime.redis.llen(reply_to) == 0


@pytest.mark.parametrize("prompt_classifier", ["off"])
async def test_off_sends_no_prompt_to_the_workers(runtime: Runtime) -> None:
    before = _unanswered()
    started = time.monotonic()
    assert (await _submit(runtime, "a lighthouse at dusk", "t:off")).created
    assert time.monotonic() - started < 2.0
    assert await runtime.redis.exists(prompt_check.REQUESTS) == 0
    assert _unanswered() == before


FRONT_END = """
import asyncio, json, sys
from atelier.runtime import Runtime
from atelier.settings import Settings
from jobs import prompt_check
from jobs.specs import imagine_spec

async def main():
    async with Runtime.open(Settings()) as runtime:
        spec = imagine_spec(runtime.registry, prompt="a lighthouse at dusk", model="tiny", tiny=True)
        await prompt_check.advertise(runtime.redis, "a worker that never answers")
        await prompt_check.check(spec, None)
        listed = await runtime.redis.exists(prompt_check.REQUESTS)
    print(json.dumps({"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                      "asked": listed}))

asyncio.run(main())
"""


async def test_a_front_end_checking_a_prompt_does_not_load_torch(
    tmp_path: Path, models_dir: Path, postgres_databases
) -> None:
    url = redis_url(17)
    client = Redis.from_url(url)
    await client.flushdb()
    await client.aclose()
    env = service_env(
        tmp_path,
        models_dir=models_dir,
        redis_url=url,
        database_url=await postgres_databases("atelier_test_prompt_front"),
        queue_name="atelier:test:prompt-front",
    )
    env["ATELIER_PROMPT_CHECK_WAIT_S"] = "0.3"
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", FRONT_END],
        cwd=Path(__file__).parents[2],
        env=atelier_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # It asked the listed worker (which never answered, so it went on), and loaded neither torch nor
    # transformers.
    assert seen == {"torch": False, "transformers": False, "asked": 1}
