"""What the Slack app needs to know, as plain values: the composition root fills it from `atelier.settings`.

`bots` may not import `atelier`, so the tokens arrive here as strings, once, from the one place that reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_API_BASE = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"
REACTION_ACTIONS = frozenset({"upscale", "faces"})


@dataclass(frozen=True)
class SlackConfig:
    """Tokens and endpoints of one Slack app installed in one workspace.

    An app-level token (`xapp-…`) selects Socket Mode; without one the app serves HTTP at `host:port` and needs
    the signing secret, because every request is verified against it.
    """

    bot_token: str
    signing_secret: str | None = None
    app_token: str | None = None
    api_base: str = DEFAULT_API_BASE
    host: str = "0.0.0.0"
    port: int = 3000
    admins: frozenset[str] = frozenset()
    # ATELIER_SLACK_OPERATORS: user ids that /atelier lets above the operator's ceilings (quotas.ceilings)
    operators: frozenset[str] = frozenset()
    reactions: Mapping[str, str] = field(default_factory=lambda: {"mag": "upscale", "sparkles": "faces"})

    def __post_init__(self) -> None:
        if not self.bot_token:
            raise ValueError("the Slack app needs a bot token: set ATELIER_SLACK_BOT_TOKEN (xoxb-…)")
        if not self.socket_mode and not self.signing_secret:
            raise ValueError(
                "HTTP mode verifies every request with the signing secret: set ATELIER_SLACK_SIGNING_SECRET, "
                "or set ATELIER_SLACK_APP_TOKEN (xapp-…) to use Socket Mode"
            )
        if not self.api_base.startswith(("http://", "https://")):
            raise ValueError(
                f"the Slack API base must be an http(s) URL such as {DEFAULT_API_BASE} (got {self.api_base!r})"
            )
        if not self.api_base.endswith("/"):
            # slack_sdk joins method names onto the base: without the slash, `…/api` + `chat.update` loses `/api`.
            object.__setattr__(self, "api_base", self.api_base + "/")
        unknown = {action for action in self.reactions.values() if action not in REACTION_ACTIONS}
        if unknown:
            raise ValueError(
                f"unknown reaction action(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(REACTION_ACTIONS))}"
            )

    @property
    def socket_mode(self) -> bool:
        return bool(self.app_token)
