"""Sign-in through the platforms' own OAuth: who the member is and which Atelier tenants they belong to.

- Discord: OAuth2 authorization code with the scopes `identify guilds`. The code is exchanged at
  `{ATELIER_DISCORD_API_BASE}/oauth2/token`, then `GET /users/@me` names the member and `GET /users/@me/guilds`
  lists their guilds. The gallery offers those that are Atelier tenants, nobody else's.
- Slack: Sign in with Slack (OpenID Connect, scopes `openid profile`): `openid.connect.token`, then
  `openid.connect.userInfo`, whose `https://slack.com/team_id` is the one workspace the member signed in to.

The access token is used for those calls and then dropped: it is never stored or logged, nor is the client
secret (sent in the token request's body only). Every call has a timeout, and a platform's refusal or an
answer without the fields we need is a `SignInFailed` with a message for the member.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from atelier.settings import Settings

log = logging.getLogger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=15)


class SignInFailed(Exception):
    """The platform did not confirm who the member is; the message is safe to show them."""


@dataclass(frozen=True)
class Identity:
    platform: str
    user_id: str
    name: str
    tenants: tuple[str, ...]  # external ids of the guilds (Discord) or the workspace (Slack) they are in


class Discord:
    platform = "discord"
    label = "Discord"

    def __init__(self, settings: Settings) -> None:
        self.client_id = settings.discord_client_id or ""
        self._secret = settings.secret("discord_client_secret") or ""
        self._authorize = settings.discord_authorize_url
        self._api = settings.discord_api_base.rstrip("/")

    def authorize_url(self, state: str, redirect_uri: str) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "scope": "identify guilds",
            "state": state,
            "redirect_uri": redirect_uri,
            "prompt": "none",  # no consent screen again for a member who already authorised the app
        }
        return f"{self._authorize}?{urlencode(query)}"

    async def identify(self, http: aiohttp.ClientSession, code: str, redirect_uri: str) -> Identity:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "client_secret": self._secret,
        }
        token = await _json(http.post(f"{self._api}/oauth2/token", data=form, timeout=TIMEOUT), "Discord")
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise SignInFailed("Discord did not confirm the sign-in; please try again.")
        headers = {"Authorization": f"Bearer {access}"}
        user = await _json(http.get(f"{self._api}/users/@me", headers=headers, timeout=TIMEOUT), "Discord")
        guilds = await _json(
            http.get(f"{self._api}/users/@me/guilds", headers=headers, timeout=TIMEOUT), "Discord"
        )
        if not isinstance(user, dict) or not user.get("id") or not isinstance(guilds, list):
            raise SignInFailed("Discord did not say who you are; please try again.")
        name = user.get("global_name") or user.get("username") or str(user["id"])
        ids = tuple(str(g["id"]) for g in guilds if isinstance(g, dict) and g.get("id"))
        return Identity("discord", str(user["id"]), str(name), ids)


class Slack:
    platform = "slack"
    label = "Slack"

    def __init__(self, settings: Settings) -> None:
        self.client_id = settings.slack_client_id or ""
        self._secret = settings.secret("slack_client_secret") or ""
        self._authorize = settings.slack_authorize_url
        self._api = (
            settings.slack_api_base
            if settings.slack_api_base.endswith("/")
            else settings.slack_api_base + "/"
        )

    def authorize_url(self, state: str, redirect_uri: str) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "scope": "openid profile",
            "state": state,
            "redirect_uri": redirect_uri,
        }
        return f"{self._authorize}?{urlencode(query)}"

    async def identify(self, http: aiohttp.ClientSession, code: str, redirect_uri: str) -> Identity:
        form = {
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "client_secret": self._secret,
            "grant_type": "authorization_code",
        }
        token = await _json(
            http.post(f"{self._api}openid.connect.token", data=form, timeout=TIMEOUT), "Slack"
        )
        access = token.get("access_token") if token.get("ok") else None
        if not isinstance(access, str) or not access:
            log.info("Slack refused the sign-in code: %s", token.get("error", "no access token"))
            raise SignInFailed("Slack did not confirm the sign-in; please try again.")
        headers = {"Authorization": f"Bearer {access}"}
        info = await _json(
            http.post(f"{self._api}openid.connect.userInfo", headers=headers, timeout=TIMEOUT), "Slack"
        )
        user_id = info.get("https://slack.com/user_id") or info.get("sub")
        team_id = info.get("https://slack.com/team_id")
        if not info.get("ok") or not user_id or not team_id:
            raise SignInFailed("Slack did not say who you are; please try again.")
        name = info.get("name") or info.get("given_name") or str(user_id)
        return Identity("slack", str(user_id), str(name), (str(team_id),))


Provider = Discord | Slack


def providers(settings: Settings) -> dict[str, Provider]:
    """The sign-in providers whose client id and secret are configured, by platform."""
    found: dict[str, Provider] = {}
    if settings.discord_client_id and settings.discord_client_secret:
        found["discord"] = Discord(settings)
    if settings.slack_client_id and settings.slack_client_secret:
        found["slack"] = Slack(settings)
    return found


async def _json(request, platform: str) -> dict | list:
    """The JSON answer of `request`; SignInFailed on a network error or a non-2xx status (logged by status only:
    bodies may echo the code)."""
    try:
        async with request as response:
            if response.status >= 400:
                log.info(
                    "%s answered %s to a sign-in call (%s)", platform, response.status, response.url.path
                )
                raise SignInFailed(f"{platform} did not confirm the sign-in; please try again.")
            return await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("%s sign-in call failed: %s", platform, type(exc).__name__)
        raise SignInFailed(f"Could not reach {platform} to sign you in; please try again.") from None
