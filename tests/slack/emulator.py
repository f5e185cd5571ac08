"""A local Slack: the Web API, `response_url`s, the external-upload URL and a Socket Mode WebSocket, on 127.0.0.1.

The real `atelier slack` process and the worker talk to it through `ATELIER_SLACK_API_BASE`; tests drive it
(Socket Mode envelopes) and read what it recorded: every request, with the monotonic time it arrived. Web API
arguments are accepted the three ways slack_sdk sends them (query string, form, JSON) and by GET. Failures can
be injected per method (`fail_next`: a 429 with `Retry-After`, or an `ok: false` error).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

T = TypeVar("T")


@dataclass
class Call:
    """One request the emulator received."""

    kind: str  # "api", "upload", "response_url", "socket_ack"
    method: str  # Web API method, upload file id, response_url id, or envelope id
    args: dict[str, Any]
    at: float  # time.monotonic() on arrival
    token: str | None = None
    body: bytes = b""
    result: dict = field(default_factory=dict)  # what the emulator answered (Web API calls)


@dataclass
class Upload:
    file_id: str
    filename: str
    length: int
    data: bytes = b""
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    completed: bool = False


@dataclass
class Failure:
    status: int
    error: str
    retry_after: int | None = None
    when: dict[str, Any] = field(default_factory=dict)  # only calls whose arguments include these


@dataclass
class SlackEmulator:
    team_id: str = "T1"
    bot_user_id: str = "UBOT"
    bot_id: str = "BBOT"
    admins: set[str] = field(default_factory=set)
    bot_token: str | None = None  # when set, files are served only to requests carrying it
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], dict] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    socket_acks: dict[str, Call] = field(default_factory=dict)
    views: dict[str, dict] = field(default_factory=dict)  # modals opened (views.open), by view id

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._ts = itertools.count(1)
        self._failures: dict[str, list[Failure]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_connected = asyncio.Event()
        self._changed = asyncio.Event()
        self._files: dict[str, tuple[bytes, str]] = {}  # file id -> (bytes, content type)
        self.file_objects: dict[str, dict] = {}  # file id -> what files.info answers
        self.file_redirects: dict[str, str] = {}  # file id -> where its download redirects to

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{id}", self._response_url)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/files/{file_id}/{name}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for ws in self._sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self, name: str | None = None) -> str:
        return f"{self.base_url}/response/{name or uuid.uuid4().hex}"

    # -- what tests read ---------------------------------------------------------------------------------------

    def api_calls(self, method: str | None = None, *, failed: bool = False, **match: Any) -> list[Call]:
        """Web API calls answered `ok` (or, with `failed`, those answered with an injected failure), optionally
        of one method and with arguments equal to `match`."""
        return [
            c
            for c in self.calls
            if c.kind == "api"
            and bool(c.result.get("ok")) is not failed
            and (method is None or c.method == method)
            and all(c.args.get(k) == v for k, v in match.items())
        ]

    def responses(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.kind == "response_url" and c.method == name]

    async def wait_for(self, probe: Callable[[], T], *, within_s: float = 30.0, what: str = "") -> T:
        """Wait until `probe()` returns something truthy; return it."""
        deadline = time.monotonic() + within_s
        while True:
            value = probe()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {within_s} s waiting for {what or probe}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        error: str = "ratelimited",
        retry_after: int | None = 1,
        when: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next call of `method` (with arguments including `when`) with a failure."""
        self._failures.setdefault(method, []).append(Failure(status, error, retry_after, when or {}))

    def add_file(
        self, data: bytes, name: str, mimetype: str, *, size: int | None = None, file_id: str | None = None
    ) -> dict:
        """Host a file someone posted; return its file object as Slack puts it in a message's `files`
        (`size` may lie, as a test of the app's own limit while it downloads; `file_id`: an upload's own)."""
        file_id = file_id or f"F{uuid.uuid4().hex[:10].upper()}"
        self._files[file_id] = (data, mimetype)
        url = f"{self.base_url}/files/{file_id}/{name}"
        self.file_objects[file_id] = {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "size": len(data) if size is None else size,
            "mode": "hosted",
            "url_private": url,
            "url_private_download": url + "?download=1",
            "permalink": f"https://atelier-test.slack.com/files/U1/{file_id}/{name}",
        }
        return self.file_objects[file_id]

    def downloads(self, file_id: str) -> list[Call]:
        return [c for c in self.calls if c.kind == "file" and c.method == file_id]

    # -- Socket Mode -------------------------------------------------------------------------------------------

    async def wait_socket_connected(self, within_s: float = 30.0) -> None:
        await asyncio.wait_for(self._socket_connected.wait(), within_s)

    async def send_envelope(self, type_: str, payload: dict, *, retry_attempt: int = 0) -> tuple[str, float]:
        """Push one Socket Mode envelope to the connected app; return its id and when it was sent."""
        if not self._sockets:
            raise AssertionError("no Socket Mode connection")
        envelope_id = uuid.uuid4().hex
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": type_,
            "payload": payload,
            "accepts_response_payload": type_ != "events_api",
        }
        if type_ == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = "timeout" if retry_attempt else ""
        sent_at = time.monotonic()
        await self._sockets[-1].send_str(json.dumps(envelope))
        return envelope_id, sent_at

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "connection_info": {"app_id": "A1"},
                    "debug_info": {"host": "emulator"},
                }
            )
        )
        self._socket_connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                call = Call("socket_ack", data.get("envelope_id", ""), data, time.monotonic())
                self.calls.append(call)
                self.socket_acks[call.method] = call
                self._changed.set()
        self._sockets.remove(ws)
        return ws

    # -- HTTP endpoints ----------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        body = await request.read()
        if body:
            content_type = request.content_type
            if content_type == "application/json":
                args.update(json.loads(body))
            elif content_type == "application/x-www-form-urlencoded":
                args.update((await request.post()).items())
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth else args.get("token")
        call = Call("api", method, args, time.monotonic(), token, body)
        self.calls.append(call)
        self._changed.set()
        failure = self._take_failure(method, args)
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            call.result = {"ok": False, "error": failure.error, "status": failure.status}
            return web.json_response(
                {"ok": False, "error": failure.error}, status=failure.status, headers=headers
            )
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        call.result = {"ok": True, **handler(args)} if handler else {"ok": False, "error": "unknown_method"}
        return web.json_response(call.result)

    def _take_failure(self, method: str, args: dict[str, Any]) -> Failure | None:
        failures = self._failures.get(method, [])
        for failure in failures:
            if all(args.get(k) == v for k, v in failure.when.items()):
                failures.remove(failure)
                return failure
        return None

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        data = await request.read()
        self.calls.append(Call("upload", file_id, {"length": len(data)}, time.monotonic(), body=data))
        upload = self.uploads.get(file_id)
        if upload is None:
            return web.Response(status=404, text="no such upload")
        upload.data = data
        self._changed.set()
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _file(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or None
        self.calls.append(Call("file", file_id, dict(request.query), time.monotonic(), token))
        self._changed.set()
        if file_id in self.file_redirects:
            return web.Response(status=302, headers={"Location": self.file_redirects[file_id]})
        if file_id not in self._files:
            return web.Response(status=404, text="file_not_found")
        if token is None or (self.bot_token is not None and token != self.bot_token):
            # Slack answers an unauthenticated download with its sign-in page, not an error status.
            return web.Response(text="<html>sign in</html>", content_type="text/html")
        data, mimetype = self._files[file_id]
        return web.Response(body=data, content_type=mimetype)

    async def _response_url(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.calls.append(Call("response_url", request.match_info["id"], payload, time.monotonic()))
        self._changed.set()
        return web.Response(text="ok", content_type="text/plain")

    # -- Web API methods ---------------------------------------------------------------------------------------

    def _m_auth_test(self, args: dict) -> dict:
        return {
            "url": "https://atelier-test.slack.com/",
            "team": "Atelier Test",
            "user": "atelier",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
        }

    def _m_apps_connections_open(self, args: dict) -> dict:
        return {"url": f"ws://127.0.0.1:{self.port}/socket"}

    def _m_chat_postMessage(self, args: dict) -> dict:
        ts = self._next_ts()
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "ts": ts,
            "text": args.get("text", ""),
            "blocks": _json_arg(args.get("blocks")) or [],
            "thread_ts": args.get("thread_ts"),
        }
        self.messages[(args["channel"], ts)] = message
        return {"channel": args["channel"], "ts": ts, "message": message}

    def _m_chat_update(self, args: dict) -> dict:
        message = self.messages.get((args["channel"], args["ts"]))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.update(text=args.get("text", ""), blocks=_json_arg(args.get("blocks")) or [])
        return {"channel": args["channel"], "ts": args["ts"], "text": message["text"], "message": message}

    def _m_chat_delete(self, args: dict) -> dict:
        self.messages.pop((args["channel"], args["ts"]), None)
        return {"channel": args["channel"], "ts": args["ts"]}

    def _m_chat_postEphemeral(self, args: dict) -> dict:
        return {"message_ts": self._next_ts()}

    def _m_reactions_add(self, args: dict) -> dict:
        return {}

    def _m_users_info(self, args: dict) -> dict:
        user = args["user"]
        return {
            "user": {"id": user, "name": user.lower(), "is_admin": user in self.admins, "is_owner": False}
        }

    def _m_files_info(self, args: dict) -> dict:
        file = self.file_objects.get(args.get("file", ""))
        return {"file": file} if file else {"ok": False, "error": "file_not_found"}

    def _m_views_open(self, args: dict) -> dict:
        view = {**_json_arg(args["view"]), "id": f"V{next(self._ts):08d}", "team_id": self.team_id}
        self.views[view["id"]] = view
        return {"view": view}

    def _m_files_getUploadURLExternal(self, args: dict) -> dict:
        file_id = f"F{uuid.uuid4().hex[:10].upper()}"
        self.uploads[file_id] = Upload(file_id, args["filename"], int(args["length"]))
        return {"upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, args: dict) -> dict:
        files = _json_arg(args["files"])
        done = []
        for f in files:
            upload = self.uploads[f["id"]]
            upload.title, upload.channel = f.get("title"), args.get("channel_id")
            upload.thread_ts, upload.completed = args.get("thread_ts"), True
            done.append({"id": upload.file_id, "title": upload.title, "name": upload.filename})
        if args.get("channel_id"):  # shared at once: Slack posts the files as one message of the uploader's
            shared = []
            for f in done:
                upload = self.uploads[f["id"]]
                mimetype = "image/png" if upload.filename.endswith(".png") else "image/jpeg"
                shared.append(self.add_file(upload.data, upload.filename, mimetype, file_id=upload.file_id))
            self.post_message(args["channel_id"], self.bot_user_id, shared, thread_ts=args.get("thread_ts"))
        return {"files": done}

    def post_message(
        self, channel: str, user: str, files: list[dict], *, thread_ts: str | None = None
    ) -> dict:
        """A message with `files` by `user` (a member's upload, or the file share of an upload)."""
        ts = self._next_ts()
        message = {
            "type": "message",
            "user": user,
            "ts": ts,
            "text": "",
            "files": files,
            "thread_ts": thread_ts,
        }
        self.messages[(channel, ts)] = message
        return message

    def _m_conversations_open(self, args: dict) -> dict:
        return {"channel": {"id": "D" + args["users"]}}  # the direct messages of the app and that member

    def _m_conversations_replies(self, args: dict) -> dict:
        ts = args["ts"]
        found = [
            m
            for (channel, _), m in self.messages.items()
            if channel == args["channel"] and ts in (m["ts"], m.get("thread_ts"))
        ]
        return {"messages": sorted(found, key=lambda m: float(m["ts"]))}

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"


def _json_arg(value: Any) -> Any:
    """Slack accepts structured arguments as JSON or as JSON-encoded strings (form and query string)."""
    return json.loads(value) if isinstance(value, str) else value
