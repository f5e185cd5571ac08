"""Webhook delivery on the real PostgreSQL, to a real local receiver: signatures, retries with the same
idempotency id, no redirect followed, internal addresses refused when not allowed, two senders never sending one
attempt twice, and giving up."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client import REGISTRY

from jobs import webhooks
from jobs.outbound import OutboundRefused, OutboundRules, check_url
from jobs.webhooks import RetryPolicy, Sweeper
from storage.api_models import WebhookDelivery
from tests.api_webhooks.receiver import until

ALLOW_LOOPBACK = OutboundRules.of(False, ["127.0.0.0/8"])
FAST = RetryPolicy(retry_s=0.2, poll_s=0.2)


async def row_where(row_id: str, predicate) -> WebhookDelivery:
    async def check():
        row = await WebhookDelivery.get(id=row_id)
        return row if predicate(row) else None

    return await until(check, what=f"delivery {row_id}")


def deliveries(outcome: str) -> float:
    """atelier_webhook_deliveries_total{outcome} in this process (the sweepers run here)."""
    return REGISTRY.get_sample_value("atelier_webhook_deliveries_total", {"outcome": outcome}) or 0.0


def test_signature_verifies_only_the_signed_body_with_the_secret_within_tolerance() -> None:
    body = b'{"id":"wh_1","event":"job.succeeded"}'
    header = webhooks.sign("whsec_a", body)
    assert webhooks.verify("whsec_a", header, body)
    assert webhooks.verify("whsec_a", header, body.decode())
    assert not webhooks.verify("whsec_b", header, body)
    assert not webhooks.verify("whsec_a", header, body + b" ")
    old = webhooks.sign("whsec_a", body, timestamp=int(time.time()) - 301)
    assert not webhooks.verify("whsec_a", old, body)
    assert webhooks.verify("whsec_a", old, body, tolerance_s=400)
    # the receiver's check, spelled out: HMAC-SHA256 of "t.body"
    t = header.split(",")[0].removeprefix("t=")
    assert header == f"t={t},v1={webhooks.signature('whsec_a', int(t), body)}"
    assert not webhooks.verify("whsec_a", "v1=" + webhooks.signature("whsec_a", int(t), body), body)
    assert not webhooks.verify("whsec_a", "", body)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 written as a number
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http://user:pw@example.com/hook",
        "http://host.invalid/hook",
        "not a url",
    ],
)
async def test_internal_and_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(OutboundRefused):
        await check_url(url, OutboundRules())


async def test_the_operator_may_allow_internal_receivers() -> None:
    await check_url("http://127.0.0.1:9/hook", OutboundRules.of(True))
    await check_url("http://localhost:9/hook", OutboundRules.of(False, ["localhost"]))
    await check_url("http://10.1.2.3/hook", OutboundRules.of(False, ["10.1.0.0/16"]))
    with pytest.raises(OutboundRefused):
        await check_url("http://10.2.0.1/hook", OutboundRules.of(False, ["10.1.0.0/16"]))


async def test_recording_twice_writes_one_row(no_deliveries, api_key) -> None:
    key, _ = api_key
    first = await webhooks.record(
        api_key_id=key.id, subject="j1", event="job.succeeded", url="http://x/", payload={"n": 1}
    )
    again = await webhooks.record(
        api_key_id=key.id, subject="j1", event="job.succeeded", url="http://x/", payload={"n": 2}
    )
    assert again.id == first.id and again.payload == {"n": 1}
    assert await WebhookDelivery.filter(subject="j1").count() == 1
    other = await webhooks.record(
        api_key_id=key.id, subject="j1", event="job.failed", url="http://x/", payload={}
    )
    assert other.id != first.id


async def test_a_failing_receiver_gets_the_delivery_again_with_the_same_id(
    no_deliveries, api_key, receiver
) -> None:
    key, _ = api_key
    receiver.answers = [500, 500]  # then 200
    row = await webhooks.record(
        api_key_id=key.id,
        subject="jretry",
        event="job.succeeded",
        url=receiver.url(),
        payload={"id": "jretry"},
    )
    before = {outcome: deliveries(outcome) for outcome in webhooks.metrics.WEBHOOK_OUTCOMES}
    async with Sweeper(ALLOW_LOOPBACK, FAST).running():
        done = await row_where(row.id, lambda r: r.delivered_at is not None)
    got = receiver.received
    assert len(got) == 3
    counted = {outcome: deliveries(outcome) - before[outcome] for outcome in before}
    assert counted == {"delivered": 1, "failed": 2, "given_up": 0}
    assert {r.webhook_id for r in got} == {row.id}
    assert all(r.signed for r in got)
    assert [r.body["data"] for r in got] == [{"id": "jretry"}] * 3
    assert got[0].body == {
        "id": row.id,
        "event": "job.succeeded",
        "created_at": got[0].body["created_at"],
        "data": {"id": "jretry"},
    }
    assert done.attempts == 3 and done.last_status == 200 and done.last_error is None
    # the pauses follow the schedule: 0.2 s, then 0.4 s (each ±20 %), not a fixed poll
    first_pause, second_pause = got[1].at - got[0].at, got[2].at - got[1].at
    assert 0.15 < first_pause < 1.0 and 0.3 < second_pause < 1.5


async def test_a_redirect_is_not_followed(no_deliveries, api_key, receiver) -> None:
    key, _ = api_key
    receiver.answers = [302]
    row = await webhooks.record(
        api_key_id=key.id, subject="jredir", event="job.failed", url=receiver.url(), payload={}
    )
    async with Sweeper(ALLOW_LOOPBACK, RetryPolicy(retry_s=60, poll_s=0.2)).running():
        failed = await row_where(row.id, lambda r: r.last_status is not None)
    assert failed.last_status == 302 and failed.delivered_at is None and failed.given_up_at is None
    assert "redirects are not followed" in failed.last_error
    assert [r.path for r in receiver.received] == ["/hook"]  # never /elsewhere


async def test_an_internal_receiver_is_refused_at_send_time_unless_allowed(
    no_deliveries, api_key, receiver
) -> None:
    key, _ = api_key
    by_name = await webhooks.record(
        api_key_id=key.id, subject="jint", event="job.failed", url=receiver.url(host="localhost"), payload={}
    )
    by_address = await webhooks.record(
        api_key_id=key.id, subject="jint", event="job.cancelled", url=receiver.url(), payload={}
    )
    async with Sweeper(OutboundRules(), RetryPolicy(retry_s=60, poll_s=0.2)).running():
        for row in (by_name, by_address):
            refused = await row_where(row.id, lambda r: r.last_error is not None)
            assert refused.attempts == 1 and refused.delivered_at is None
            assert "internal address" in refused.last_error
    assert receiver.received == []  # both attempts ended without a request


async def test_two_senders_never_send_one_attempt_twice(no_deliveries, api_key, receiver) -> None:
    key, _ = api_key
    rows = [
        await webhooks.record(
            api_key_id=key.id, subject=f"jpar{i}", event="job.succeeded", url=receiver.url(), payload={"i": i}
        )
        for i in range(40)
    ]
    async with Sweeper(ALLOW_LOOPBACK, FAST).running(), Sweeper(ALLOW_LOOPBACK, FAST).running():
        await until(lambda: _all_delivered([r.id for r in rows]), what="40 deliveries")
    ids = [r.webhook_id for r in receiver.received]
    assert sorted(ids) == sorted(r.id for r in rows)  # each once
    assert all(r.signed for r in receiver.received)
    assert await WebhookDelivery.filter(id__in=[r.id for r in rows], attempts=1).count() == 40


async def _all_delivered(ids: list[str]) -> bool:
    return await WebhookDelivery.filter(id__in=ids, delivered_at__isnull=False).count() == len(ids)


async def test_attempts_stop_when_the_give_up_time_has_passed(no_deliveries, api_key, receiver) -> None:
    key, _ = api_key
    receiver.answers = [503] * 1000
    row = await webhooks.record(
        api_key_id=key.id, subject="jgone", event="job.succeeded", url=receiver.url(), payload={}
    )
    policy = RetryPolicy(retry_s=0.1, give_up_s=1.0, poll_s=0.1)
    given_up, failed = deliveries("given_up"), deliveries("failed")
    async with Sweeper(ALLOW_LOOPBACK, policy).running():
        gone = await row_where(row.id, lambda r: r.given_up_at is not None)
    assert gone.delivered_at is None and gone.last_status == 503
    assert gone.attempts == len(receiver.received) >= 3
    assert deliveries("given_up") - given_up == 1
    assert deliveries("failed") - failed == gone.attempts - 1
    # the last attempt was made at the give-up time, not before it and not after
    assert (gone.given_up_at - gone.created_at).total_seconds() == pytest.approx(1.0, abs=0.5)
    assert json.loads(json.dumps(gone.payload)) == {}
