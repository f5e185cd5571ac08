"""A second local web server, standing for a host that is not the platform's: it serves a PNG to anyone and
records every request it gets with its headers, so a test can show that nothing (least of all a bot token) went
there."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Recorder:
    body: bytes
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, headers)
    port: int = 0
    host: str = "127.0.0.1"

    async def start(self, host: str = "127.0.0.1") -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.host = host

    async def close(self) -> None:
        await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    async def _serve(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers)))
        return web.Response(body=self.body, content_type="image/png")
