"""Signed webhooks: recorded as rows first, then POSTed by a sweeper in every API and worker process until
delivered or given up.

Signing (as Stripe and Slack do it): each request carries `Atelier-Signature: t=<unix seconds>,v1=<hex>`, where
the hex is HMAC-SHA256, keyed with the API key's webhook secret, of `f"{t}.{body}"`; a receiver recomputes it
(`verify`) and refuses a stale `t`, so a captured request cannot be replayed later. `Atelier-Webhook-Id` is the
idempotency id: the same on every attempt of one delivery, so a receiver that saw it already answers 2xx and does
nothing (delivery is at least once). `Atelier-Event` names the event (`job.succeeded`, `batch.completed`, …).

Recording (`record`): the row is written before anything is sent, with an id derived from the subject (or a key
the caller chooses, e.g. batch and job) and the event, so recording the same end twice (a job that ran twice, two
processes noticing one batch's end) is a no-op.

Delivering (`Sweeper`): each process runs one. A pass reads rows that are due and claims each with one
conditional UPDATE (attempts = attempts + 1 and next_attempt_at pushed `claim_s` ahead, only where attempts
still has the value read), so two processes never send the same attempt; a process that dies mid-send leaves the
row claimed until `claim_s` passes, and then any sweeper takes it again. A 2xx answer delivers; anything else
(an error, a timeout, a redirect, which is never followed, an address the outbound rules refuse) schedules the
next attempt after a pause that doubles from `retry_s` up to `max_pause_s` (each ±20 % jitter, so receivers that
failed together are not retried together), until `give_up_s` after the row was written: then `given_up_at` is
set. The last status and error stay on the row for operators, and each attempt's outcome is counted in
`atelier_webhook_deliveries_total` (delivered, failed, given_up).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
from tortoise.exceptions import IntegrityError

from jobs import metrics
from jobs.outbound import (
    CheckedResolver,
    OutboundRefused,
    OutboundRules,
    check_address,
    literal_address,
    split_url,
)
from storage.api_models import WebhookDelivery

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Atelier-Signature"
ID_HEADER = "Atelier-Webhook-Id"
EVENT_HEADER = "Atelier-Event"
USER_AGENT = "Atelier-Webhooks/1"
TOLERANCE_S = 300


# --- signing ---------------------------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `f"{timestamp}.{body}"` keyed with `secret`."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `Atelier-Signature` header value for `body` sent now (or at `timestamp`)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, t, body)}"


def verify(
    secret: str, header: str, body: bytes | str, tolerance_s: float = TOLERANCE_S, now: float | None = None
) -> bool:
    """Whether `header` (an `Atelier-Signature` value) signs `body` with `secret` within `tolerance_s` seconds of
    now. Any `v1` in the header may match (several appear while a secret is being rotated)."""
    if isinstance(body, str):
        body = body.encode()
    timestamp, candidates = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)


# --- recording -------------------------------------------------------------------------------------------------


def delivery_id(subject: str, event: str) -> str:
    """The idempotency id of `event` about `subject` (a job or batch id): the same however often it is recorded."""
    return "wh_" + hashlib.blake2b(f"{subject}:{event}".encode(), digest_size=12).hexdigest()


async def record(
    *, api_key_id: int | None, subject: str, event: str, url: str, payload: dict, key: str | None = None
) -> WebhookDelivery:
    """Write the delivery of `event` about `subject` to `url`, due now, unless it was written before (then the
    existing row is returned unchanged). Its id comes from `key` (default: `subject`) and `event`."""
    row_id = delivery_id(key or subject, event)
    existing = await WebhookDelivery.get_or_none(id=row_id)
    if existing is not None:
        return existing
    try:
        return await WebhookDelivery.create(
            id=row_id,
            api_key_id=api_key_id,
            subject=subject,
            event=event,
            url=url,
            payload=payload,
            next_attempt_at=datetime.now(UTC),
        )
    except IntegrityError:  # recorded meanwhile by another process
        return await WebhookDelivery.get(id=row_id)


def body_of(row: WebhookDelivery) -> bytes:
    """The JSON body of every attempt of `row`: the event's envelope around its payload."""
    envelope = {
        "id": row.id,
        "event": row.event,
        "created_at": row.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": row.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


# --- delivering ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How deliveries are sent and retried (see the module's docstring)."""

    timeout_s: float = 10.0
    retry_s: float = 30.0
    max_pause_s: float = 3600.0
    give_up_s: float = 86400.0
    poll_s: float = 1.0  # the longest a sweeper sleeps between looks for due rows
    concurrency: int = 16  # sends in flight per process

    @property
    def claim_s(self) -> float:
        """How long a claimed row waits for its sender before any sweeper may take it again: the send's time
        limit and a margin for writing its outcome."""
        return self.timeout_s + 5.0

    def pause(self, attempts: int) -> float:
        """Seconds before the next attempt, after `attempts` failed ones."""
        base = min(self.retry_s * 2 ** max(attempts - 1, 0), self.max_pause_s)
        return min(base * random.uniform(0.8, 1.2), self.max_pause_s)


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status: int | None = None
    error: str | None = None


async def send(
    session: aiohttp.ClientSession, row: WebhookDelivery, secret: str, rules: OutboundRules
) -> Outcome:
    """POST `row` once, signed with `secret`. Never raises for what a receiver or the network does."""
    body = body_of(row)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ID_HEADER: row.id,
        EVENT_HEADER: row.event,
        SIGNATURE_HEADER: sign(secret, body),
    }
    try:
        _scheme, host, _port = split_url(row.url)
        literal = literal_address(host)
        if literal is not None:  # aiohttp connects to literals without asking the resolver
            check_address(host, literal, rules)
        async with session.post(row.url, data=body, headers=headers, allow_redirects=False) as response:
            await response.read()
            if 200 <= response.status < 300:
                return Outcome(True, response.status)
            note = " (redirects are not followed)" if 300 <= response.status < 400 else ""
            return Outcome(False, response.status, f"answered {response.status}{note}")
    except OutboundRefused as exc:
        return Outcome(False, None, f"refused by the outbound rules: the URL {exc}")
    except TimeoutError:
        return Outcome(False, None, "timed out")
    except aiohttp.ClientError as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500])
    except OSError as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500])


class Sweeper:
    """Delivers due webhooks from this process until closed (see the module's docstring). `wake()` makes it look
    at once (a process that just recorded a delivery calls it)."""

    def __init__(self, rules: OutboundRules, policy: RetryPolicy | None = None) -> None:
        self.rules, self.policy = rules, policy or RetryPolicy()
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None
        self._failing = False

    def wake(self) -> None:
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Sweeper]:
        """Run the sweeper in the background while the context is open."""
        task = asyncio.create_task(self.run(), name="webhook-sweeper")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        for outcome in metrics.WEBHOOK_OUTCOMES:  # at 0 from the start, so rate() sees the first of each
            metrics.WEBHOOK_DELIVERIES.labels(outcome)
        connector = aiohttp.TCPConnector(resolver=CheckedResolver(self.rules), limit=self.policy.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        try:
            while True:
                self._wake.clear()
                next_due = await self._pass()
                wait = self.policy.poll_s if next_due is None else min(self.policy.poll_s, next_due)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(wait, 0.01))
        finally:
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self._session.close()

    async def _pass(self) -> float | None:
        """Claim and start what is due; return the seconds until the next pending row is due (None: none known).
        A database that does not answer is logged once per outage and tried again at the next pass."""
        try:
            await self.deliver_due()
            upcoming = (
                await WebhookDelivery.filter(delivered_at=None, given_up_at=None)
                .order_by("next_attempt_at")
                .first()
                .values_list("next_attempt_at", flat=True)
            )
        except Exception as exc:
            if not self._failing:
                log.warning("webhook sweeper: cannot read deliveries (%s); trying again", exc)
            self._failing = True
            return None
        if self._failing:
            log.info("webhook sweeper: reading deliveries again")
        self._failing = False
        if upcoming is None:
            return None
        return (upcoming - datetime.now(UTC)).total_seconds()

    async def deliver_due(self) -> int:
        """Claim the rows due now (as many as free sending slots) and start sending each; return how many."""
        room = self.policy.concurrency - len(self._in_flight)
        if room <= 0:
            return 0
        now = datetime.now(UTC)
        due = (
            await WebhookDelivery.filter(delivered_at=None, given_up_at=None, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .limit(room)
            .values_list("id", "attempts")
        )
        started = 0
        for row_id, attempts in due:
            claimed = await WebhookDelivery.filter(
                id=row_id, attempts=attempts, delivered_at=None, given_up_at=None, next_attempt_at__lte=now
            ).update(attempts=attempts + 1, next_attempt_at=now + timedelta(seconds=self.policy.claim_s))
            if not claimed:
                continue  # another process took this attempt
            task = asyncio.create_task(self._attempt(row_id, attempts + 1))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            started += 1
        return started

    async def _attempt(self, row_id: str, attempt: int) -> None:
        try:
            row = await WebhookDelivery.get(id=row_id).select_related("api_key")
            if row.api_key is None:
                outcome = Outcome(False, None, "the API key it was signed with was deleted")
                await _finish(row_id, attempt, outcome, give_up=True)
                return
            assert self._session is not None
            outcome = await send(self._session, row, row.api_key.webhook_secret, self.rules)
            now = datetime.now(UTC)
            deadline = row.created_at + timedelta(seconds=self.policy.give_up_s)
            next_at = min(now + timedelta(seconds=self.policy.pause(attempt)), deadline)
            await _finish(row_id, attempt, outcome, give_up=now >= deadline, next_at=next_at)
            if outcome.delivered:
                log.info("webhook %s (%s) delivered on attempt %d", row_id, row.event, attempt)
            else:
                log.warning(
                    "webhook %s (%s) attempt %d failed: %s", row_id, row.event, attempt, outcome.error
                )
        except Exception:
            # The row stays claimed; when the claim lapses any sweeper tries it again.
            log.exception("webhook %s: attempt %d could not be completed", row_id, attempt)


async def _finish(
    row_id: str, attempt: int, outcome: Outcome, *, give_up: bool, next_at: datetime | None = None
) -> None:
    """Write an attempt's outcome, only while the row is still this attempt's (a sender slower than its claim
    does not overwrite a later attempt; a delivery is recorded whichever attempt made it)."""
    now = datetime.now(UTC)
    if outcome.delivered:
        delivered = await WebhookDelivery.filter(id=row_id, delivered_at=None).update(
            delivered_at=now, last_status=outcome.status, last_error=None
        )
        if delivered:
            metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
        return
    changes: dict = {"last_status": outcome.status, "last_error": outcome.error}
    if give_up:
        changes["given_up_at"] = now
    else:
        changes["next_attempt_at"] = next_at
    updated = await WebhookDelivery.filter(id=row_id, attempts=attempt, delivered_at=None).update(**changes)
    if updated:
        metrics.WEBHOOK_DELIVERIES.labels("given_up" if give_up else "failed").inc()
    if updated and give_up:
        log.warning("webhook %s given up after %d attempts: %s", row_id, attempt, outcome.error)
