"""The prompt check (issue 17, item 2): a prompt on the server's word list, matching its pattern, on the
built-in list or scored high by the prompt classifier is refused before anything is queued, naming the rule;
nothing is recorded, reserved or put on the queue. Another server's words do not apply. The classifier's tests
answer the checks in this process as a worker does (`serving`); tests/moderation/test_remote_prompt_check.py runs
a real worker process."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from atelier.runtime import Runtime
from jobs.prompt_check import PromptRefused
from jobs.queue import enqueue
from jobs.specs import ReplyTarget, imagine_spec
from quotas.admin import Admin
from quotas.admin_args import chat_parser, check, run_tenant_action
from storage.models import Job, get_or_create_tenant
from storage.quota_models import QuotaReservation

CLI = ReplyTarget(platform="cli")


async def _admin(runtime: Runtime, tenant: str, *words: str) -> str:
    admin = Admin(runtime.redis, runtime.settings.queue_name)
    args = chat_parser("/atelier").parse_args(list(words))
    limits, clear = check(args, admin.tiers)
    return await run_tenant_action(admin, args, tenant, limits, clear, operator=True)


async def _submit(runtime: Runtime, tenant_id: str, prompt: str, request_id: str, **options: object):
    tenant = await get_or_create_tenant("discord", tenant_id)
    spec = imagine_spec(runtime.registry, prompt=prompt, model="tiny", tiny=True, **options)
    return await enqueue(
        runtime.redis,
        spec,
        request_id=request_id,
        reply_target=CLI,
        queue_name=runtime.settings.queue_name,
        tenant=tenant,
    )


async def _nothing_queued(runtime: Runtime) -> None:
    assert await Job.all().count() == 0
    assert await QuotaReservation.all().count() == 0
    assert await runtime.redis.zcard(runtime.settings.queue_name) == 0


async def test_server_words_and_patterns_refuse_naming_the_rule(runtime: Runtime) -> None:
    answer = await _admin(runtime, "discord:71", "safety", "--add-word", "Gorgonzola")
    assert "prompts with 'gorgonzola' are refused" in answer
    await _admin(runtime, "discord:71", "safety", "--add-pattern", r"blue\s+cheese")

    with pytest.raises(PromptRefused) as refused:
        await _submit(runtime, "71", "a plate of GORGONZOLA, studio light", "t:word")
    assert str(refused.value) == "Refused by this server's word list: 'gorgonzola'."
    with pytest.raises(PromptRefused) as refused:
        await _submit(runtime, "71", "a cat", "t:negative", negative="blue   cheese")
    assert str(refused.value) == r"Refused by this server's pattern: 'blue\\s+cheese'."
    with pytest.raises(PromptRefused, match="built-in prompt list"):
        await _submit(runtime, "71", "a loli", "t:builtin")
    await _nothing_queued(runtime)

    # A whole word only, and only on the server that listed it.
    assert (await _submit(runtime, "71", "gorgonzolas are not a word here", "t:part")).created
    assert (await _submit(runtime, "72", "a plate of gorgonzola", "t:other")).created
    listed = await _admin(runtime, "discord:71", "safety", "--words")
    assert "word 'gorgonzola'" in listed and r"pattern 'blue\\s+cheese'" in listed
    await _admin(runtime, "discord:71", "safety", "--remove", "gorgonzola")
    assert (await _submit(runtime, "71", "a plate of gorgonzola", "t:removed")).created


async def test_a_bad_pattern_is_refused_naming_it(runtime: Runtime) -> None:
    with pytest.raises(ValueError, match="'cheese\\(' is not a valid regular expression"):
        await _admin(runtime, "discord:71", "safety", "--add-pattern", "cheese(")


@pytest.mark.parametrize("prompt_classifier", ["tiny-nsfw-prompt-strict"])
@pytest.mark.usefixtures("serving")
async def test_the_prompt_classifier_refuses_with_its_score(runtime: Runtime) -> None:
    with pytest.raises(PromptRefused) as refused:
        await _submit(runtime, "73", "a lighthouse at dusk", "t:classifier")
    assert str(refused.value) == "Refused by the prompt classifier (score 1.50 ≥ 0.60)."
    await _nothing_queued(runtime)


@pytest.mark.usefixtures("serving")
async def test_the_tiny_prompt_classifier_lets_prompts_through(runtime: Runtime) -> None:
    unanswered = REGISTRY.get_sample_value("atelier_prompt_checks_unanswered_total") or 0.0
    assert (await _submit(runtime, "73", "a lighthouse at dusk", "t:plain")).created
    assert (
        REGISTRY.get_sample_value("atelier_prompt_checks_unanswered_total") or 0.0
    ) == unanswered  # answered
