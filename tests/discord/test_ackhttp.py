"""The acknowledger's HTTP client (bots/discord/ackhttp.py) against a real loopback server that answers each
request the way a test scripts it: the framings HTTP/1.1 allows, connections kept and dropped, and answers
that never come or come broken."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from bots.discord.ackhttp import OriginPool, TransportError


@dataclass
class Server:
    """Reads each request (head and Content-Length body) and lets `answer` write whatever it likes."""

    answer: Callable[[asyncio.StreamWriter, bytes], object] = lambda writer, body: None
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    port: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set when a connection ends

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                outcome = self.answer(writer, body)
                if asyncio.iscoroutine(outcome):
                    await outcome
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            self.closed.set()
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    listening = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield state


def pool(server: Server, limit: int = 4) -> OriginPool:
    return OriginPool(f"http://127.0.0.1:{server.port}/api/v10", limit=limit, headers={"User-Agent": "test"})


def sized(status: int, body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


async def test_answers_with_a_length_come_back_whole_over_one_kept_connection(server: Server) -> None:
    server.answer = lambda writer, body: writer.write(sized(200, b'{"echo":' + body + b"}"))
    client = pool(server)
    answers = [
        await client.post(f"/interactions/{i}/t/callback?with_response=1", b"%d" % i, within_s=30)
        for i in range(3)
    ]
    await client.close()

    assert [(a.status, a.body) for a in answers] == [(200, b'{"echo":%d}' % i) for i in range(3)]
    assert answers[0].headers["content-length"] == "10"
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /api/v10/interactions/0/t/callback?with_response=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:%d\r\n" % server.port in first and b"\r\nUser-Agent: test\r\n" in first
    assert client.url("/x?y=1") == f"http://127.0.0.1:{server.port}/api/v10/x?y=1"


async def test_a_chunked_answer_arriving_a_byte_at_a_time_is_read_and_the_connection_kept(
    server: Server,
) -> None:
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"

    async def trickle(writer: asyncio.StreamWriter, _: bytes) -> None:
        for i in range(len(wire)):
            writer.write(wire[i : i + 1])
            await writer.drain()

    server.answer = trickle
    client = pool(server)
    answers = [await client.post("/a", b"{}", within_s=30) for _ in range(2)]
    await client.close()

    assert [a.body for a in answers] == [b"hello world"] * 2
    assert server.connections == 1


async def test_an_answer_framed_by_the_close_and_one_saying_close_each_end_their_connection(
    server: Server,
) -> None:
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\n\r\nuntil the end",  # no length: the body is what comes before the close
            sized(204, b"", "Connection: close"),
            sized(200, b"third"),
        ]
    )

    def answer(writer: asyncio.StreamWriter, _: bytes) -> None:
        wire = next(answers)
        writer.write(wire)
        if b"Content-Length" not in wire or b"close" in wire:
            writer.close()

    server.answer = answer
    client = pool(server)
    got = [await client.post("/a", b"{}", within_s=30) for _ in range(3)]
    await client.close()

    assert [(a.status, a.body) for a in got] == [(200, b"until the end"), (204, b""), (200, b"third")]
    assert server.connections == 3


async def test_a_connection_the_server_dropped_while_idle_is_replaced(server: Server) -> None:
    server.answer = lambda writer, _: writer.write(sized(200, b"ok"))
    client = pool(server)
    assert (await client.post("/a", b"{}", within_s=30)).body == b"ok"
    server.writers[0].close()
    await asyncio.wait_for(server.closed.wait(), 10)

    assert (await client.post("/a", b"{}", within_s=30)).body == b"ok"
    await client.close()
    assert server.connections == 2


async def test_no_more_connections_than_the_limit_and_every_request_answered(server: Server) -> None:
    async def slow(writer: asyncio.StreamWriter, body: bytes) -> None:
        await asyncio.sleep(0.01)  # long enough for the requests to pile up behind the limit
        writer.write(sized(200, body))

    server.answer = slow
    client = pool(server, limit=2)
    answers = await asyncio.gather(*(client.post("/a", b"%d" % i, within_s=60) for i in range(20)))
    await client.close()

    assert [a.body for a in answers] == [b"%d" % i for i in range(20)]
    assert server.most_open <= 2


@pytest.mark.parametrize(
    "wire",
    [
        b"",  # no answer at all: the deadline
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # closed before the whole body
        b"SSH-2.0-OpenSSH\r\n\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",  # a length that is not one
    ],
    ids=["silence", "cut-short", "not-http", "bad-length"],
)
async def test_an_answer_that_never_comes_or_comes_broken_is_a_transport_error(
    server: Server, wire: bytes
) -> None:
    def answer(writer: asyncio.StreamWriter, _: bytes) -> None:
        if wire:
            writer.write(wire)
            writer.close()

    server.answer = answer
    client = pool(server)
    with pytest.raises(TransportError):
        await client.post("/a", b"{}", within_s=0.5 if not wire else 30)
    # The pool has its slot back: the next request gets a connection of its own and its answer.
    server.answer = lambda writer, _: writer.write(sized(200, b"ok"))
    assert (await client.post("/a", b"{}", within_s=30)).body == b"ok"
    await client.close()


async def test_nothing_listening_is_a_transport_error(server: Server) -> None:
    closed = OriginPool("http://127.0.0.1:9/api", limit=1, headers={})  # the discard port: nothing there
    with pytest.raises(TransportError, match="could not connect"):
        await closed.post("/a", b"{}", within_s=30)
    with pytest.raises(TransportError, match="could not connect"):  # the slot was given back
        await closed.post("/a", b"{}", within_s=30)
    await closed.close()
