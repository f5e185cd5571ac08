"""A local Discord OAuth2 and Sign in with Slack (OpenID Connect) for the gallery's tests, on 127.0.0.1.

It plays the platforms' parts of the flows: an authorize page (a consent screen with an Authorize button, as the
platforms show, for whichever account the test has signed in "at the platform"), which redirects back with a
one-time code and the state it was given; the token endpoints, which check the client id, the client secret
and the redirect URI against what the code was issued for; and the identity endpoints (Discord's
`/users/@me` and `/users/@me/guilds`, Slack's `openid.connect.userInfo`) for the bearer token issued. Every
request is recorded, so tests can check what Atelier sent (and that a secret went only where it belongs).

Paths: Discord's API under `/api/v10` (ATELIER_DISCORD_API_BASE), its authorize page at `/oauth2/authorize`;
Slack's Web API under `/api/` (ATELIER_SLACK_API_BASE), its authorize page at `/openid/connect/authorize`.
"""

from __future__ import annotations

import html
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode

from aiohttp import web

DISCORD_SCOPES = {"identify", "guilds"}
SLACK_SCOPES = {"openid", "profile"}


@dataclass
class DiscordAccount:
    id: str
    username: str
    guilds: list[tuple[str, str]]  # (guild id, name)


@dataclass
class SlackAccount:
    user_id: str
    name: str
    team_id: str
    team_name: str


@dataclass
class Grant:
    platform: str
    account: str  # the key of the account in `discord_accounts` / `slack_accounts`
    client_id: str
    redirect_uri: str


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    authorization: str


@dataclass
class OAuthEmulator:
    client_id: str
    client_secret: str
    redirect_uris: set[str] = field(default_factory=set)  # registered with the "platform"
    discord_accounts: dict[str, DiscordAccount] = field(default_factory=dict)
    slack_accounts: dict[str, SlackAccount] = field(default_factory=dict)
    signed_in: dict[str, str] = field(default_factory=dict)  # platform -> account key: who is logged in there
    requests: list[Recorded] = field(default_factory=list)
    _codes: dict[str, Grant] = field(default_factory=dict)
    _tokens: dict[str, Grant] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/oauth2/authorize", self._consent("discord"))
        app.router.add_post("/oauth2/authorize", self._approve("discord"))
        app.router.add_post("/api/v10/oauth2/token", self._discord_token)
        app.router.add_get("/api/v10/users/@me", self._discord_me)
        app.router.add_get("/api/v10/users/@me/guilds", self._discord_guilds)
        app.router.add_get("/openid/connect/authorize", self._consent("slack"))
        app.router.add_post("/openid/connect/authorize", self._approve("slack"))
        app.router.add_post("/api/openid.connect.token", self._slack_token)
        app.router.add_route("*", "/api/openid.connect.userInfo", self._slack_user_info)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler):
        form = dict(await request.post()) if request.method == "POST" else {}
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                form,
                request.headers.get("Authorization", ""),
            )
        )
        return await handler(request)

    # The browser's part: the consent page, then the redirect back with a code.

    def _check_authorize(self, platform: str, params) -> str | None:
        scopes = set(params.get("scope", "").split())
        wanted = DISCORD_SCOPES if platform == "discord" else SLACK_SCOPES
        if params.get("client_id") != self.client_id:
            return "unknown client_id"
        if params.get("redirect_uri") not in self.redirect_uris:
            return f"redirect_uri {params.get('redirect_uri')!r} is not registered"
        if params.get("response_type") != "code" or scopes != wanted:
            return f"expected response_type=code and scope {' '.join(sorted(wanted))}"
        if not params.get("state"):
            return "no state"
        return None

    def _consent(self, platform: str):
        async def consent(request: web.Request) -> web.Response:
            problem = self._check_authorize(platform, request.query)
            if problem:
                return web.Response(status=400, text=problem)
            account = self.signed_in.get(platform)
            if account is None:
                return web.Response(status=401, text=f"nobody is signed in at {platform}")
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in request.query.items()
            )
            page = (
                f"<!doctype html><title>Authorize</title><h1>{platform.title()}: Atelier wants to know who you are"
                f"</h1><p>Signed in as {html.escape(account)}</p><form method=post>{hidden}"
                '<button id="authorize" type="submit">Authorize</button></form>'
            )
            return web.Response(text=page, content_type="text/html")

        return consent

    def _approve(self, platform: str):
        async def approve(request: web.Request) -> web.Response:
            params = await request.post()
            problem = self._check_authorize(platform, params)
            if problem:
                return web.Response(status=400, text=problem)
            code = secrets.token_urlsafe(16)
            self._codes[code] = Grant(
                platform, self.signed_in[platform], params["client_id"], params["redirect_uri"]
            )
            location = f"{params['redirect_uri']}?{urlencode({'code': code, 'state': params['state']})}"
            raise web.HTTPFound(location)

        return approve

    def _redeem(self, platform: str, form) -> Grant | str:
        grant = self._codes.pop(form.get("code", ""), None)  # a code works once
        if grant is None or grant.platform != platform:
            return "invalid_code"
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return "invalid_client"
        if form.get("redirect_uri") != grant.redirect_uri:
            return "invalid_redirect_uri"
        return grant

    def _bearer(self, request: web.Request, platform: str) -> Grant | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        grant = self._tokens.get(token) if scheme == "Bearer" else None
        return grant if grant is not None and grant.platform == platform else None

    # Discord's API.

    async def _discord_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        grant = self._redeem("discord", form)
        if isinstance(grant, str):
            return web.json_response({"error": "invalid_grant", "error_description": grant}, status=400)
        token = secrets.token_urlsafe(24)
        self._tokens[token] = grant
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": 604800, "scope": "identify guilds"}
        )

    async def _discord_me(self, request: web.Request) -> web.Response:
        grant = self._bearer(request, "discord")
        if grant is None:
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        account = self.discord_accounts[grant.account]
        return web.json_response(
            {
                "id": account.id,
                "username": account.username,
                "global_name": account.username,
                "discriminator": "0",
            }
        )

    async def _discord_guilds(self, request: web.Request) -> web.Response:
        grant = self._bearer(request, "discord")
        if grant is None:
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        guilds = self.discord_accounts[grant.account].guilds
        return web.json_response(
            [
                {"id": gid, "name": name, "icon": None, "owner": False, "permissions": "0"}
                for gid, name in guilds
            ]
        )

    # Slack's Web API (errors are HTTP 200 with ok: false, as Slack answers).

    async def _slack_token(self, request: web.Request) -> web.Response:
        grant = self._redeem("slack", await request.post())
        if isinstance(grant, str):
            return web.json_response({"ok": False, "error": grant})
        token = "xoxp-" + secrets.token_urlsafe(24)
        self._tokens[token] = grant
        return web.json_response(
            {"ok": True, "access_token": token, "token_type": "Bearer", "id_token": "x.y.z"}
        )

    async def _slack_user_info(self, request: web.Request) -> web.Response:
        grant = self._bearer(request, "slack")
        if grant is None:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        account = self.slack_accounts[grant.account]
        return web.json_response(
            {
                "ok": True,
                "sub": account.user_id,
                "https://slack.com/user_id": account.user_id,
                "https://slack.com/team_id": account.team_id,
                "https://slack.com/team_name": account.team_name,
                "name": account.name,
            }
        )
