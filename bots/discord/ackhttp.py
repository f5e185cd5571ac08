"""A small HTTP/1.1 client for one origin: keep-alive connections, one request at a time on each, for the one
request whose cost decides how late a burst's last interaction is acknowledged (`bots.discord.acks`).

aiohttp spends about three times the CPU of the request itself on its machinery (a `ClientRequest`, URL
objects, timeout contexts, trace signals, the connector's bookkeeping): measured side by side in one process
against a local server, 110 µs a POST through `ClientSession.post` and 37 µs here. Under a burst every
microsecond is paid once per interaction before the last one is acknowledged (see `bench/ack_burst.py`).

What it does: `POST` with a fixed set of headers; answers framed by Content-Length, chunked, or the connection's
end; `Connection: close` honoured; a deadline per request; at most `limit` connections, requests waiting in
order for a free one. What it does not: redirects, proxies, compression, cookies, retries. Any failure to
send or to read a whole answer is a `TransportError`, and the caller decides (the acknowledger hands the
interaction to discord.py, which retries).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024  # status line and headers; a longer head is not an answer from Discord
NO_BODY = frozenset({204, 304})


class TransportError(Exception):
    """The request was not answered: it may or may not have reached the server."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class OriginPool:
    """Keep-alive connections to the origin of `base_url` (`https://discord.com/api/v10`); request paths are
    relative to its path."""

    def __init__(self, base_url: str, *, limit: int, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        host_header = parts.netloc.rpartition("@")[2]
        fixed = {"Host": host_header, **headers}
        self._head_tail = "".join(f"{name}: {value}\r\n" for name, value in fixed.items()).encode("latin-1")
        self._limit = limit
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiting: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._closed = False

    def url(self, path: str) -> str:
        """The absolute URL a request for `path` goes to."""
        return self._origin + self.prefix + path

    async def post(self, path: str, body: bytes, *, within_s: float) -> Response:
        """POST `body` to the origin's `prefix + path` (with its query); the whole answer, or TransportError."""
        connection = await self._acquire()
        try:
            head = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (
                (self.prefix + path).encode("latin-1"),
                self._head_tail,
                len(body),
            )
            response = await connection.exchange(head + body, within_s)
        except BaseException:
            connection.close()
            self._release(None)
            raise
        self._release(connection if connection.reusable else None)
        return response

    async def close(self) -> None:
        self._closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(TransportError("the pool is closed"))

    async def _acquire(self) -> _Connection:
        if self._closed:
            raise TransportError("the pool is closed")
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection
            self._open -= 1  # closed by the server while idle
        if self._open >= self._limit:
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            handed = await waiter  # a connection, or None: a slot to open one in
            if handed is not None:
                return handed
        else:
            self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._release(None)
            raise

    def _release(self, connection: _Connection | None) -> None:
        """Give a reusable connection (or, with None, the slot of one that closed) to the next waiter, else
        keep it idle (or free the slot)."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is None:
            self._open -= 1
        else:
            self._idle.append(connection)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection,
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"could not connect to {self.host}:{self.port}: {exc}") from exc
        return connection


class _Connection(asyncio.Protocol):
    """One connection: a request written whole, its answer parsed as bytes arrive."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[Response] | None = None
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._length: int | None = None  # the body's, when known
        self._chunked = False
        self._body = bytearray()
        self._lost = False
        self._keep = False  # whether the server keeps the connection open after this answer
        self.reusable = False  # true between whole exchanges on a connection both sides keep open

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.reusable = True

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        self._buffer += data
        try:
            self._parse()
        except TransportError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.reusable = False
        self._ended(exc)

    # the exchange

    async def exchange(self, request: bytes, within_s: float) -> Response:
        assert self._transport is not None and self._answer is None
        loop = asyncio.get_running_loop()
        self.reusable = False
        self._answer = answer = loop.create_future()
        self._status, self._headers, self._length, self._chunked = 0, None, None, False
        self._body.clear()
        deadline = loop.call_later(within_s, self._fail, TransportError(f"no answer within {within_s:g} s"))
        self._transport.write(request)
        try:
            return await answer
        finally:
            deadline.cancel()
            self._answer = None

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: TransportError) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        self.close()

    def _ended(self, exc: Exception | None = None) -> None:
        """The server closed: the body if it was framed by the close, else a failure."""
        if self._answer is None or self._answer.done():
            return
        if self._headers is not None and self._length is None and not self._chunked:
            self._finish(bytes(self._body + self._buffer), keep=False)
        else:
            self._fail(
                TransportError(f"the connection closed before the whole answer: {exc or 'end of stream'}")
            )

    def _parse(self) -> None:
        if self._headers is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise TransportError("an answer's head longer than 64 KiB")
                return
            self._read_head(bytes(self._buffer[:end]).decode("latin-1"))
            del self._buffer[: end + 4]
        if self._chunked:
            self._read_chunks()
        elif self._length is not None:
            if len(self._buffer) >= self._length:
                body = bytes(self._buffer[: self._length])
                del self._buffer[: self._length]
                self._finish(body, keep=True)
        else:
            self._body += self._buffer  # framed by the connection's end
            self._buffer.clear()

    def _read_head(self, head: str) -> None:
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise TransportError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
        self._status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise TransportError(f"a malformed header line: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        self._headers = headers
        self._keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if self._status in NO_BODY or 100 <= self._status < 200:
            self._length = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            try:
                self._length = int(headers["content-length"])
            except ValueError:
                raise TransportError(f"a bad Content-Length: {headers['content-length']!r}") from None
        else:
            self._keep = False  # the body ends with the connection

    def _read_chunks(self) -> None:
        while True:
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return
            size_text = bytes(self._buffer[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise TransportError(f"a bad chunk size: {size_text[:20]!r}") from None
            if size == 0:
                trailer_end = self._buffer.find(b"\r\n\r\n", end)
                if trailer_end < 0:
                    return  # the trailers (usually none) are not all here yet
                del self._buffer[: trailer_end + 4]
                self._finish(bytes(self._body), keep=True)
                return
            if len(self._buffer) < end + 2 + size + 2:
                return
            self._body += self._buffer[end + 2 : end + 2 + size]
            del self._buffer[: end + 2 + size + 2]

    def _finish(self, body: bytes, *, keep: bool) -> None:
        assert self._answer is not None and self._headers is not None
        self.reusable = keep and self._keep and not self._lost and not self._buffer
        self._answer.set_result(Response(self._status, self._headers, body))
        if not self.reusable:
            self.close()
