"""A local Discord for end-to-end tests: REST, gateway WebSocket and CDN on 127.0.0.1, recording everything.

The real `atelier discord` (discord.py) and `atelier worker` processes talk to it through
`ATELIER_DISCORD_API_BASE` and `ATELIER_DISCORD_GATEWAY_URL`. Tests drive it like users would (slash commands,
button clicks and autocomplete as INTERACTION_CREATE frames) and assert on what it received. It keeps the rules
the bots must respect (see ../shared/PLATFORMS.md): the 3 s deadline for an interaction's first response, one
response per interaction, interaction tokens that die 15 minutes after the interaction was minted, bot-token
authorisation, direct messages (`POST /users/@me/channels`, then the DM channel's messages; `dms_closed` users
refuse them with 403/50007), and it can inject 429s (with `Via` and `retry_after`, as Discord sends them),
latency and expired tokens.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.discord import payloads as p

API_PREFIX = "/api/v10"
DEADLINE_S = 3.0
TOKEN_LIFETIME_S = 15 * 60
EPHEMERAL, LOADING = 1 << 6, 1 << 7
CHAT_INPUT_COMMAND, DEFAULT_MESSAGE, REPLY = 20, 0, 19


@dataclass
class UploadedFile:
    field: str
    filename: str
    data: bytes
    content_type: str


@dataclass
class Recorded:
    """One REST request as received, and how it was answered."""

    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    bot_auth: bool
    payload: dict | None
    files: list[UploadedFile]
    at: float
    status: int = 0
    message_id: int | None = None  # the message a message request was about, once resolved


@dataclass
class Upload:
    """A file a member attaches to a slash command or a message; `size` overrides what Discord declares."""

    filename: str
    data: bytes
    content_type: str = "image/png"
    size: int | None = None


@dataclass
class Attachment:
    id: int
    filename: str
    data: bytes
    content_type: str


@dataclass
class Message:
    id: int
    channel_id: int
    author_id: int
    created_at: float
    content: str = ""
    components: list = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = DEFAULT_MESSAGE
    webhook_id: int | None = None
    reference: dict | None = None
    edits: list[float] = field(default_factory=list)
    deleted: bool = False
    nonce: str | None = None

    def custom_ids(self) -> list[str]:
        return [
            c["custom_id"] for row in self.components for c in row.get("components", []) if "custom_id" in c
        ]


@dataclass
class Interaction:
    id: int
    token: str
    kind: int
    channel_id: int
    user_id: int
    payload: dict
    dispatched_at: float = 0.0
    callback_at: float | None = None
    callback_type: int | None = None
    callback_data: dict | None = None
    original_message_id: int | None = None  # the deferred/sent response, or the clicked message
    expired: bool = False

    @property
    def created_at(self) -> float:
        return ((self.id >> 22) + p.DISCORD_EPOCH_MS) / 1000


@dataclass
class RateLimitRule:
    method: str
    pattern: re.Pattern[str]
    every: int
    retry_after: float
    seen: int = 0
    served: int = 0


@dataclass
class FailureRule:
    """Answer the next `times` matching requests with `status`; `after_effect`: do what was asked first (a 5xx
    that Discord sends after it already created the message)."""

    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    after_effect: bool
    served: int = 0


FLAKY_RETRY_AFTER_S = 0.3


@dataclass
class Flakiness:
    """Answer `fraction` of REST requests (those `spare` does not match) with an error, in turn a 500 before
    doing anything, a 503 after doing what was asked (Discord created the message, the answer got lost) and a
    429; chosen with a seeded random, so a run repeats."""

    fraction: float
    spare: re.Pattern[str]
    rng: random.Random
    served: dict[int, int] = field(default_factory=dict)

    def answer(self, method: str, path: str) -> int | None:
        if self.spare.search(f"{method} {path}") or self.rng.random() >= self.fraction:
            return None
        status = (500, 503, 429)[sum(self.served.values()) % 3]
        self.served[status] = self.served.get(status, 0) + 1
        return status


class DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        self.status, self.code, self.message = status, code, message


class DiscordEmulator:
    def __init__(self, bot_token: str = "emulated-bot-token") -> None:
        self.bot_token = bot_token
        self.app_id = p.mint()
        self.bot = p.user(self.app_id, "atelier", bot=True)  # a bot user's id is its application's id
        self.guild_id, self.channel_id = p.mint(), p.mint()
        self.nsfw_channel_id = p.mint()  # an age-restricted channel in the same guild
        self.other_guild_id, self.other_channel_id = p.mint(), p.mint()  # a second server the bot is in
        self.admin_role_id = p.mint()
        self.users = {name: p.user(p.mint(), name) for name in ("alice", "bob", "carol")}
        self.requests: list[Recorded] = []
        self.messages: dict[int, Message] = {}
        self.guild_names = {self.guild_id: "Test Guild", self.other_guild_id: "Other Guild"}
        self.channels: dict[int, dict] = {
            self.channel_id: p.text_channel(self.channel_id, self.guild_id, "gen"),
            self.nsfw_channel_id: p.text_channel(
                self.nsfw_channel_id, self.guild_id, "after-dark", nsfw=True
            ),
            self.other_channel_id: p.text_channel(self.other_channel_id, self.other_guild_id, "elsewhere"),
        }
        self.threads_by_message: dict[int, int] = {}
        self.dm_channels: dict[int, int] = {}  # user id -> the bot's DM channel with them
        self.dms_closed: set[int] = set()  # users who accept no DM from the bot (Discord answers 403, 50007)
        self.interactions: dict[str, Interaction] = {}  # by token
        self.commands: dict[str, list[dict]] = {}  # "global" or guild id -> registered commands
        self.gateway_frames: list[dict] = []  # what the bot sent on the gateway
        self.cdn: dict[str, tuple[bytes, str]] = {}
        self.cdn_requests: list[str] = []  # the name of every file asked of the CDN, in order
        self.latency = 0.0
        self.rate_limits: list[RateLimitRule] = []
        self.failures: list[FailureRule] = []
        self.flakiness: Flakiness | None = None
        # Called with ("before", request) once a REST request is read and ("after", request) once it was done,
        # before the answer goes back: where a fault test kills the process that sent it.
        self.hooks: list[Callable[[str, Recorded], None]] = []
        self._sockets: list[tuple[web.WebSocketResponse, list[int]]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # Lifecycle and addresses.

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/{name:.+}", self._cdn)
        app.router.add_route("*", API_PREFIX + "/{path:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for ws, _ in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # Fault injection.

    def rate_limit(
        self,
        method: str,
        path_pattern: str,
        *,
        every: int,
        retry_after: float = 0.2,
        starting_with_first: bool = False,
    ) -> RateLimitRule:
        """Answer every `every`-th matching request with a 429 (Discord's shape: `Via` header, JSON body);
        with `starting_with_first`, the count starts so that the first matching request is one of them (the
        refusal then happens however few requests the test makes)."""
        rule = RateLimitRule(method, re.compile(path_pattern), every, retry_after)
        if starting_with_first:
            rule.seen = every - 1
        self.rate_limits.append(rule)
        return rule

    def fail(
        self, method: str, path_pattern: str, *, status: int = 500, times: int = 1, after_effect: bool = False
    ) -> FailureRule:
        """Answer the next `times` matching requests with `status` (a server error by default), after doing
        what they asked when `after_effect`."""
        rule = FailureRule(method, re.compile(path_pattern), status, times, after_effect)
        self.failures.append(rule)
        return rule

    def flaky(self, fraction: float, *, spare: str, seed: int = 0) -> Flakiness:
        """Fail `fraction` of the REST requests whose "METHOD /path" `spare` (a regex) does not match; see
        `Flakiness`. `flaky(0, spare="")` turns it off."""
        self.flakiness = Flakiness(fraction, re.compile(spare), random.Random(seed)) if fraction else None
        return self.flakiness

    def expire_token(self, token: str) -> None:
        self.interactions[token].expired = True

    def expire_tokens_on_file_followups(self) -> Callable[[str, Recorded], None]:
        """From now on, a followup with files (a job's result) finds its interaction token expired, as one
        posted after the token's 15 minutes would; returns the hook, for `hooks.remove`."""

        def hook(stage: str, record: Recorded) -> None:
            parts = record.path.strip("/").split("/")
            if stage == "before" and record.method == "POST" and parts[0] == "webhooks" and len(parts) == 3:
                if record.files and parts[2] in self.interactions:
                    self.expire_token(parts[2])

        self.hooks.append(hook)
        return hook

    def dms_of(self, user: str) -> list[Message]:
        """Messages the bot sent to `user`'s direct messages, oldest first."""
        channel_id = self.dm_channels.get(int(self.users[user]["id"]))
        return [] if channel_id is None else self.messages_in(channel_id)

    # Driving the bot, as users would.

    async def wait_until(
        self, predicate: Callable[[], Any], within: float = 30.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise TimeoutError(f"timed out after {within:.0f} s waiting for {what}")

    def bot_ready(self) -> bool:
        """The bot sets its presence in on_ready, after the guilds arrived."""
        return any(frame.get("op") == 3 for frame in self.gateway_frames)

    async def slash(
        self,
        name: str,
        options: dict[str, object],
        *,
        user: str = "alice",
        dm: bool = False,
        minted_at: float | None = None,
        attachment_size_limit: int = 10 * 1024 * 1024,
        permissions: int = p.MEMBER_PERMISSIONS,
        roles: list[int] = (),  # type: ignore[assignment]
        app_permissions: int = p.BOT_PERMISSIONS,
        subcommand: str | None = None,
        channel_id: int | None = None,
    ) -> Interaction:
        """Invoke `/name` (or `/name subcommand`, or `/name group subcommand`) with string, integer, boolean or
        file (`Upload`) options; `minted_at` backdates the interaction (and its token); `app_permissions` are
        the bot's own in the channel; `channel_id` (default: the test channel) also picks the guild."""
        typed, resolved = [], {}
        for key, value in options.items():
            if isinstance(value, Upload):
                attachment = self._upload(value)
                resolved[attachment["id"]] = attachment
                typed.append({"name": key, "type": 11, "value": attachment["id"]})
            else:
                kind = 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3
                typed.append({"name": key, "type": kind, "value": value})
        if subcommand is not None:
            *groups, leaf = subcommand.split()
            typed = [{"name": leaf, "type": 1, "options": typed}]
            for group in reversed(groups):
                typed = [{"name": group, "type": 2, "options": typed}]
        data = {"id": str(self._command_id(name)), "name": name, "type": 1, "options": typed}
        if resolved:
            data["resolved"] = {"attachments": resolved}
        channel_id = channel_id or self.channel_id
        if not dm:
            data["guild_id"] = self.channels[channel_id]["guild_id"]
        return await self._interact(
            2,
            data,
            user,
            channel_id=channel_id,
            dm=dm,
            minted_at=minted_at,
            size_limit=attachment_size_limit,
            permissions=permissions,
            roles=roles,
            app_permissions=app_permissions,
        )

    def post(
        self,
        user: str,
        content: str = "",
        files: list[Upload] = (),  # type: ignore[assignment]
        *,
        channel_id: int | None = None,
    ) -> Message:
        """A member posts a message (with files) in the test channel (or `channel_id`); nothing is dispatched
        (no message intent)."""
        channel_id = channel_id or self.channel_id
        message = Message(p.mint(), channel_id, int(self.users[user]["id"]), time.time(), content)
        message.attachments = [Attachment(p.mint(), f.filename, f.data, f.content_type) for f in files]
        self.messages[message.id] = message
        self._publish(message)
        return message

    async def react(self, message_id: int, emoji: str, *, user: str = "alice") -> None:
        """A member adds a reaction: MESSAGE_REACTION_ADD, as Discord sends it to a bot with reaction intents."""
        message, actor = self.messages[message_id], self.users[user]
        data = {
            "user_id": actor["id"],
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "guild_id": self._guild_of(message.channel_id),
            "member": p.member(actor, permissions=p.MEMBER_PERMISSIONS),
            "emoji": {"id": None, "name": emoji},
            "message_author_id": str(message.author_id),
            "burst": False,
            "burst_colors": [],
            "type": 0,
        }
        await self.dispatch("MESSAGE_REACTION_ADD", data)

    def _upload(self, upload: Upload) -> dict:
        attachment_id = p.mint()
        name = f"attachments/uploads/{attachment_id}/{upload.filename}"
        self.cdn[name] = (upload.data, upload.content_type)
        url = f"http://127.0.0.1:{self.port}/cdn/{name}"
        return {
            "id": str(attachment_id),
            "filename": upload.filename,
            "size": len(upload.data) if upload.size is None else upload.size,
            "content_type": upload.content_type,
            "url": url,
            "proxy_url": url,
        }

    async def autocomplete(
        self, name: str, option: str, typed: str, *, user: str = "alice", channel_id: int | None = None
    ) -> Interaction:
        channel_id = channel_id or self.channel_id
        data = {
            "id": str(self._command_id(name)),
            "name": name,
            "type": 1,
            "guild_id": self._guild_of(channel_id),
            "options": [{"name": option, "type": 3, "value": typed, "focused": True}],
        }
        return await self._interact(4, data, user, channel_id=channel_id)

    async def click(
        self,
        message_id: int,
        custom_id: str,
        *,
        user: str = "alice",
        permissions: int = p.MEMBER_PERMISSIONS,
        roles: list[int] = (),  # type: ignore[assignment]
    ) -> Interaction:
        message = self.messages[message_id]
        if custom_id not in message.custom_ids():
            raise AssertionError(f"message {message_id} has no button {custom_id!r}: {message.custom_ids()}")
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(3, data, user, message=message, permissions=permissions, roles=roles)

    async def _interact(
        self,
        kind: int,
        data: dict,
        user: str,
        *,
        dm: bool = False,
        minted_at: float | None = None,
        size_limit: int = 10 * 1024 * 1024,
        permissions: int = p.MEMBER_PERMISSIONS,
        roles: list[int] = (),  # type: ignore[assignment]
        message: Message | None = None,
        app_permissions: int = p.BOT_PERMISSIONS,
        channel_id: int | None = None,
    ) -> Interaction:
        actor = self.users[user]
        interaction_id, token = p.mint(minted_at), "itok-" + secrets.token_urlsafe(24)
        if dm:
            channel = {"id": str(p.mint()), "type": p.DM, "recipients": [actor]}
        else:
            channel = self.channels[message.channel_id if message else channel_id or self.channel_id]
        payload = p.interaction(
            interaction_id=interaction_id,
            app_id=self.app_id,
            token=token,
            kind=kind,
            data=data,
            channel=channel,
            actor=actor,
            guild_id=None if dm else int(self._guild_of(int(channel["id"]))),
            permissions=permissions,
            roles=roles,
            attachment_size_limit=size_limit,
            app_permissions=app_permissions,
            message=self._message_json(message) if message else None,
        )
        record = Interaction(interaction_id, token, kind, int(channel["id"]), int(actor["id"]), payload)
        if message is not None:
            record.original_message_id = message.id  # @original of a component interaction is its message
        self.interactions[token] = record
        record.dispatched_at = time.time()
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    async def wait_response(self, interaction: Interaction, within: float = 10.0) -> Interaction:
        await self.wait_until(
            lambda: interaction.callback_at is not None, within, "the interaction's response"
        )
        return interaction

    # Queries for assertions.

    def messages_in(self, channel_id: int) -> list[Message]:
        return [m for m in self.messages.values() if m.channel_id == channel_id and not m.deleted]

    def requests_for(self, message_id: int, method: str | None = None) -> list[Recorded]:
        return [
            r for r in self.requests if r.message_id == message_id and (method is None or r.method == method)
        ]

    def with_token(self, token: str) -> list[Recorded]:
        return [r for r in self.requests if token in r.path]

    # Gateway.

    async def dispatch(self, event: str, data: dict) -> None:
        for ws, seq in list(self._sockets):
            seq[0] += 1
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": seq[0], "d": data}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        seq = [0]
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            self.gateway_frames.append(frame)
            op = frame.get("op")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                if frame["d"].get("token") != self.bot_token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                await self._identify(ws, seq)
            elif op == 6:
                await ws.send_str(json.dumps({"op": 9, "d": False}))  # cannot resume: identify again
        self._sockets = [(s, q) for s, q in self._sockets if s is not ws]
        return ws

    async def _identify(self, ws: web.WebSocketResponse, seq: list[int]) -> None:
        ready = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guild_names],
            "session_id": secrets.token_hex(16),
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.app_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        frames = [("READY", ready)]
        for guild_id, name in self.guild_names.items():
            roles = [p.role(guild_id, "@everyone", p.MEMBER_PERMISSIONS)]
            if guild_id == self.guild_id:
                roles.append(p.role(self.admin_role_id, "Atelier admins", p.MEMBER_PERMISSIONS))
            channels = [
                c
                for c in self.channels.values()
                if c["type"] == p.GUILD_TEXT and c["guild_id"] == str(guild_id)
            ]
            owner = int(self.users["carol"]["id"])
            frames.append(("GUILD_CREATE", p.guild(guild_id, name, owner, channels, roles)))
        for event, data in frames:
            seq[0] += 1
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": seq[0], "d": data}))
        self._sockets.append((ws, seq))

    # CDN.

    async def _cdn(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.cdn_requests.append(name)
        if name not in self.cdn:
            return web.Response(status=404, text="Not Found")
        data, content_type = self.cdn[name]
        return web.Response(body=data, content_type=content_type)

    # REST.

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        payload, files = await _read_body(request)
        auth = request.headers.get("Authorization")
        record = Recorded(
            request.method, path, dict(request.query), auth is not None, payload, files, time.time()
        )
        self.requests.append(record)
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            if not path.startswith(("/webhooks/", "/interactions/")) and auth != f"Bot {self.bot_token}":
                raise DiscordError(401, 0, "401: Unauthorized")
            limited = self._rate_limited(request.method, path)
            flaky = self.flakiness.answer(request.method, path) if self.flakiness else None
            if limited is not None or flaky == 429:
                record.status = 429
                record.message_id = self._message_id_of(path)
                retry_after = limited.retry_after if limited is not None else FLAKY_RETRY_AFTER_S
                body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
                headers = {"Via": "1.1 google", "Retry-After": str(retry_after), "X-RateLimit-Scope": "user"}
                return _json(body, status=429, headers=headers)
            if flaky is not None:  # a 500 before doing anything, or a 503 after doing what was asked
                if flaky == 503:
                    await self._route(request.method, path, record)
                raise DiscordError(flaky, 0, f"{flaky}: emulated server error")
            failing = next(
                (
                    f
                    for f in self.failures
                    if f.served < f.times and f.method == request.method and f.pattern.search(path)
                ),
                None,
            )
            if failing is not None:
                failing.served += 1
                if failing.after_effect:
                    await self._route(request.method, path, record)
                raise DiscordError(failing.status, 0, f"{failing.status}: emulated server error")
            for hook in list(self.hooks):
                hook("before", record)
            status, body = await self._route(request.method, path, record)
            record.status = status
            for hook in list(self.hooks):
                hook("after", record)
        except DiscordError as exc:
            status, body = exc.status, {"message": exc.message, "code": exc.code}
        record.status = status
        return web.Response(status=204) if body is None else _json(body, status=status)

    def _rate_limited(self, method: str, path: str) -> RateLimitRule | None:
        for rule in self.rate_limits:
            if rule.method == method and rule.pattern.search(path):
                rule.seen += 1
                if rule.seen % rule.every == 0:
                    rule.served += 1
                    return rule
        return None

    def _message_id_of(self, path: str) -> int | None:
        match = re.search(r"/messages/(@original|\d+)$", path)
        if match is None:
            return None
        if match[1] != "@original":
            return int(match[1])
        token = path.split("/")[3]
        interaction = self.interactions.get(token)
        return interaction.original_message_id if interaction else None

    async def _route(self, method: str, path: str, record: Recorded) -> tuple[int, dict | list | None]:
        body, files = record.payload or {}, record.files
        parts = path.strip("/").split("/")
        if path == "/users/@me":
            return 200, self.bot
        if path == "/oauth2/applications/@me":
            return 200, p.application(self.app_id, self.users["carol"])
        if path in ("/gateway", "/gateway/bot"):
            return 200, {"url": self.gateway_url, "shards": 1}
        if parts[0] == "applications" and parts[-1] == "commands" and method == "PUT":
            scope = parts[3] if len(parts) == 5 else "global"
            registered = [
                {**c, "id": str(p.mint()), "application_id": str(self.app_id), "version": "1"} for c in body
            ]
            self.commands[scope] = registered
            return 200, registered
        if path == "/users/@me/channels" and method == "POST":  # open (or find) a DM with a user
            return 200, self._dm_channel(int(body["recipient_id"]))
        if parts[0] == "interactions" and parts[-1] == "callback":
            return self._callback(parts[2], body, files, record)
        if parts[0] == "webhooks":
            return self._webhook(method, parts, body, files, record)
        if parts[0] == "channels":
            return self._channel(method, parts, body, files, record)
        raise DiscordError(404, 0, f"404: Not Found ({method} {path})")

    def _callback(
        self, token: str, body: dict, files: list[UploadedFile], record: Recorded
    ) -> tuple[int, dict]:
        interaction = self.interactions.get(token)
        if interaction is None or time.time() - interaction.dispatched_at > DEADLINE_S:
            raise DiscordError(404, 10062, "Unknown interaction")
        if interaction.callback_at is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        kind, data = body["type"], body.get("data") or {}
        interaction.callback_at, interaction.callback_type, interaction.callback_data = record.at, kind, data
        if kind in (4, 5):  # a message now, or a "thinking…" one to edit later
            flags = int(data.get("flags", 0)) | (LOADING if kind == 5 else 0)
            message = self._create(interaction.channel_id, {**data, "flags": flags}, files, webhook=True)
            message.type = CHAT_INPUT_COMMAND if interaction.kind == 2 else REPLY
            interaction.original_message_id = message.id
        elif kind == 7:  # update the clicked message now
            self._edit(self.messages[interaction.original_message_id], data, files, record.at)  # type: ignore[index]
        response: dict = {
            "interaction": {"id": str(interaction.id), "type": interaction.kind},
            "resource": {"type": kind},
        }
        if kind in (4, 5):
            response["interaction"] |= {
                "response_message_id": str(interaction.original_message_id),
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(int(data.get("flags", 0)) & EPHEMERAL),
            }
        return 200, response

    def _webhook(
        self, method: str, parts: list[str], body: dict, files: list[UploadedFile], record: Recorded
    ) -> tuple[int, dict | None]:
        if len(parts) < 3 or int(parts[1]) != self.app_id:
            raise DiscordError(404, 10015, "Unknown Webhook")
        interaction = self.interactions.get(parts[2])
        if interaction is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if interaction.expired or time.time() - interaction.created_at >= TOKEN_LIFETIME_S:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if len(parts) == 3 and method == "POST":  # a followup
            channel_id = int(record.query.get("thread_id", interaction.channel_id))
            message = self._create(channel_id, body, files, webhook=True)
            record.message_id = message.id
            return (
                (200, self._message_json(message))
                if record.query.get("wait") in ("true", "1", "True")
                else (204, None)
            )
        if len(parts) == 5 and parts[3] == "messages":
            message_id = interaction.original_message_id if parts[4] == "@original" else int(parts[4])
            record.message_id = message_id
            message = self.messages.get(message_id or 0)
            if message is None or message.deleted:
                raise DiscordError(404, 10008, "Unknown Message")
            return self._message_op(method, message, body, files, record)
        raise DiscordError(405, 0, "405: Method Not Allowed")

    def _channel(
        self, method: str, parts: list[str], body: dict, files: list[UploadedFile], record: Recorded
    ) -> tuple[int, dict | None]:
        channel_id = int(parts[1])
        if channel_id not in self.channels:
            raise DiscordError(404, 10003, "Unknown Channel")
        if len(parts) == 2 and method == "GET":
            return 200, self.channels[channel_id]
        if len(parts) == 3 and parts[2] == "messages" and method == "GET":  # newest first, as Discord lists
            after, limit = int(record.query.get("after", 0)), min(int(record.query.get("limit", 50)), 100)
            listed = [m for m in self.messages_in(channel_id) if m.id > after and not m.deleted][:limit]
            return 200, [self._message_json(m) for m in reversed(listed)]
        if len(parts) == 3 and parts[2] == "messages" and method == "POST":
            recipients = self.channels[channel_id].get("recipients") or []
            if any(int(r["id"]) in self.dms_closed for r in recipients):
                raise DiscordError(403, 50007, "Cannot send messages to this user")
            message = self._create(channel_id, body, files, webhook=False)
            record.message_id = message.id
            return 200, self._message_json(message)
        if len(parts) >= 4 and parts[2] == "messages":
            message_id = int(parts[3])
            record.message_id = message_id
            message = self.messages.get(message_id)
            if message is None or message.deleted or message.channel_id != channel_id:
                raise DiscordError(404, 10008, "Unknown Message")
            if len(parts) == 5 and parts[4] == "threads" and method == "POST":
                return 200, self._start_thread(message, body)
            if len(parts) >= 6 and parts[4] == "reactions":
                return 204, None
            if len(parts) == 4:
                if method == "PATCH" and message.author_id != self.app_id:
                    raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
                return self._message_op(method, message, body, files, record)
        raise DiscordError(405, 0, "405: Method Not Allowed")

    def _message_op(
        self, method: str, message: Message, body: dict, files: list[UploadedFile], record: Recorded
    ) -> tuple[int, dict | None]:
        if method == "GET":
            return 200, self._message_json(message)
        if method == "PATCH":
            self._edit(message, body, files, record.at)
            return 200, self._message_json(message)
        if method == "DELETE":
            message.deleted = True
            return 204, None
        raise DiscordError(405, 0, "405: Method Not Allowed")

    def _dm_channel(self, user_id: int) -> dict:
        """The bot's DM channel with `user_id`, made on first use; Discord answers the same one every time
        (and opens it even for a user whose DMs are closed: the refusal comes when posting)."""
        members = [u for u in self.users.values() if int(u["id"]) == user_id]
        if not members:
            raise DiscordError(400, 50035, "Invalid Form Body: recipient_id is not a known user")
        if user_id not in self.dm_channels:
            channel_id = p.mint()
            self.channels[channel_id] = {"id": str(channel_id), "type": p.DM, "recipients": members}
            self.dm_channels[user_id] = channel_id
        return self.channels[self.dm_channels[user_id]]

    def _start_thread(self, message: Message, body: dict) -> dict:
        parent = self.channels[message.channel_id]
        if parent["type"] != p.GUILD_TEXT:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        if message.id in self.threads_by_message:
            raise DiscordError(400, 160004, "A thread has already been created for this message")
        name = body.get("name", "")
        if not 1 <= len(name) <= 100:
            raise DiscordError(400, 50035, "Invalid Form Body: name must be 1 to 100 characters")
        thread = p.thread_channel(
            message.id, int(parent["guild_id"]), message.channel_id, self.app_id, name, time.time()
        )
        self.channels[message.id] = thread  # a thread started from a message takes the message's id
        self.threads_by_message[message.id] = message.id
        return thread

    # Messages.

    def _create(self, channel_id: int, body: dict, files: list[UploadedFile], *, webhook: bool) -> Message:
        if channel_id not in self.channels and not webhook:
            raise DiscordError(404, 10003, "Unknown Channel")
        nonce = body.get("nonce") if body.get("enforce_nonce") and not webhook else None
        if nonce is not None:  # Discord returns the author's earlier message with this nonce (a few minutes)
            for earlier in self.messages_in(channel_id):
                if earlier.nonce == str(nonce) and earlier.author_id == self.app_id:
                    return earlier
        message = Message(
            p.mint(), channel_id, self.app_id, time.time(), webhook_id=self.app_id if webhook else None
        )
        message.reference = body.get("message_reference")
        message.nonce = None if nonce is None else str(nonce)
        self._apply(message, body, files)
        self.messages[message.id] = message
        return message

    def _edit(self, message: Message, body: dict, files: list[UploadedFile], at: float) -> None:
        self._apply(message, body, files)
        message.flags &= ~LOADING
        message.edits.append(at)

    def _apply(self, message: Message, body: dict, files: list[UploadedFile]) -> None:
        if len(files) > 10:
            raise DiscordError(400, 50035, "Invalid Form Body: at most 10 files")
        if "content" in body:
            if len(body["content"] or "") > 2000:
                raise DiscordError(400, 50035, "Invalid Form Body: content must be 2000 or fewer in length")
            message.content = body["content"] or ""
        if "components" in body:
            message.components = body["components"] or []
        if "flags" in body:
            message.flags = int(body["flags"] or 0)
        uploaded = {int(f.field[6:-1]): f for f in files}  # files[n]
        if "attachments" in body:
            kept = {a.id: a for a in message.attachments}
            attachments = []
            for ref in body["attachments"] or []:
                ref_id = int(ref["id"])
                if ref_id in uploaded:
                    f = uploaded[ref_id]
                    attachments.append(
                        Attachment(p.mint(), ref.get("filename", f.filename), f.data, f.content_type)
                    )
                elif ref_id in kept:
                    attachments.append(kept[ref_id])
            message.attachments = attachments
        else:
            message.attachments += [Attachment(p.mint(), f.filename, f.data, f.content_type) for f in files]
        self._publish(message)

    def _publish(self, message: Message) -> None:
        for attachment in message.attachments:
            self.cdn[f"attachments/{message.channel_id}/{attachment.id}/{attachment.filename}"] = (
                attachment.data,
                attachment.content_type,
            )

    def _message_json(self, message: Message) -> dict:
        data = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "author": self._author(message.author_id),
            "content": message.content,
            "timestamp": p.iso(message.created_at),
            "edited_timestamp": p.iso(message.edits[-1]) if message.edits else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [self._attachment_json(message, a) for a in message.attachments],
            "embeds": [],
            "pinned": False,
            "type": message.type,
            "flags": message.flags,
            "components": message.components,
        }
        if message.webhook_id is not None:
            data |= {"webhook_id": str(message.webhook_id), "application_id": str(self.app_id)}
        if message.channel_id in self.channels and "guild_id" in self.channels[message.channel_id]:
            data["guild_id"] = self._guild_of(message.channel_id)
        return data

    def _author(self, user_id: int) -> dict:
        members = [u for u in self.users.values() if int(u["id"]) == user_id]
        return members[0] if members else self.bot

    def _attachment_json(self, message: Message, attachment: Attachment) -> dict:
        url = f"http://127.0.0.1:{self.port}/cdn/attachments/{message.channel_id}/{attachment.id}/{attachment.filename}"
        return {
            "id": str(attachment.id),
            "filename": attachment.filename,
            "size": len(attachment.data),
            "content_type": attachment.content_type,
            "url": url,
            "proxy_url": url,
        }

    def _guild_of(self, channel_id: int) -> str:
        return self.channels[channel_id]["guild_id"]

    def _command_id(self, name: str) -> int:
        for registered in self.commands.values():
            for command in registered:
                if command["name"] == name:
                    return int(command["id"])
        raise AssertionError(f"the bot registered no /{name} command (registered: {self.commands})")


async def _read_body(request: web.Request) -> tuple[dict | None, list[UploadedFile]]:
    """JSON, or Discord's multipart form (`payload_json` plus `files[n]`)."""
    if request.content_type.startswith("multipart/"):
        payload, files = None, []
        reader = await request.multipart()
        async for part in reader:
            data = await part.read()  # type: ignore[union-attr]
            if part.name == "payload_json":  # type: ignore[union-attr]
                payload = json.loads(bytes(data))
            elif part.filename:  # type: ignore[union-attr]
                content_type = part.headers.get("Content-Type", "application/octet-stream")  # type: ignore[union-attr]
                files.append(UploadedFile(part.name, part.filename, bytes(data), content_type))  # type: ignore[union-attr, arg-type]
        return payload, files
    text = await request.text()
    return (json.loads(text) if text else None), []


def _json(body: dict | list, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py compares the whole Content-Type header: no "; charset=utf-8".
    response = web.Response(status=status, body=json.dumps(body).encode(), headers=headers)
    response.headers["Content-Type"] = "application/json"
    return response
