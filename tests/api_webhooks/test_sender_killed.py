"""A delivery survives the death of the process sending it: a real `atelier api` process claims it and POSTs it to
a receiver that does not answer, is SIGKILLed mid-request, and the row stays due (claimed until its claim lapses,
not delivered, not given up); another process's sweeper then delivers it with the same idempotency id."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from jobs import webhooks
from jobs.outbound import OutboundRules
from jobs.webhooks import RetryPolicy, Sweeper
from storage.api_models import WebhookDelivery
from tests.api_webhooks.conftest import REDIS_URL
from tests.api_webhooks.receiver import until
from tests.support import atelier_env, free_port

SEND_TIMEOUT_S = 5  # the killed process's send limit: its claim lapses 5 s after that


async def test_a_killed_sender_leaves_the_delivery_due_for_another_process(
    no_deliveries, flushed_redis, database_url, api_key, receiver, tmp_path: Path
) -> None:
    key, _ = api_key
    receiver.hold = asyncio.Event()  # the first request hangs until released
    row = await webhooks.record(
        api_key_id=key.id, subject="jkill", event="job.succeeded", url=receiver.url(), payload={"id": "jkill"}
    )
    env = {
        "ATELIER_REDIS_URL": REDIS_URL,
        "ATELIER_DATABASE_URL": database_url,
        "ATELIER_DATA_DIR": str(tmp_path / "data"),
        "ATELIER_BLOB_URL": str(tmp_path / "blobs"),
        "ATELIER_API_PORT": str(free_port()),
        "ATELIER_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "ATELIER_WEBHOOK_TIMEOUT_S": str(SEND_TIMEOUT_S),
    }
    log = (tmp_path / "api.log").open("w")
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "atelier", "api", cwd=tmp_path, env=atelier_env(env), stdout=log, stderr=log
    )
    try:
        await receiver.wait_for(lambda got: len(got) == 1, within=120)  # it claimed the row and is sending
    finally:
        sender.send_signal(signal.SIGKILL)
        await asyncio.wait_for(sender.wait(), 30)
        log.close()
    claimed = await WebhookDelivery.get(id=row.id)
    assert claimed.attempts == 1 and claimed.delivered_at is None and claimed.given_up_at is None
    assert claimed.next_attempt_at > datetime.now(
        UTC
    )  # still claimed by the dead sender, due when that lapses

    receiver.hold.set()  # the receiver answers from now on
    policy = RetryPolicy(timeout_s=SEND_TIMEOUT_S, poll_s=0.2)
    async with Sweeper(OutboundRules.of(False, ["127.0.0.1"]), policy).running():
        delivered = await until(
            lambda: WebhookDelivery.get_or_none(id=row.id, delivered_at__isnull=False),
            within=3 * SEND_TIMEOUT_S + 10,
            what="the delivery by the second sweeper",
        )
    assert delivered.attempts == 2 and delivered.last_status == 200
    assert delivered.delivered_at >= claimed.next_attempt_at  # not before the dead sender's claim lapsed
    got = receiver.received
    assert [r.webhook_id for r in got] == [row.id, row.id] and all(r.signed for r in got)
    assert got[0].body == got[1].body
