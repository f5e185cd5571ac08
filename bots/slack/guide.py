"""What an admin needs to put the app in a workspace: the `atelier slack --help` text.

Kept free of slack-bolt imports so the CLI builds its help without loading the app. The README's section "Run it
in your Slack workspace" says the same at more length.
"""

from __future__ import annotations

SCOPES = (
    "commands",
    "chat:write",
    "files:write",
    "files:read",
    "app_mentions:read",
    "reactions:read",
    "users:read",
    "channels:history",
    "groups:history",
    "im:write",
)

HELP = f"""\
Run Atelier's Slack app: /imagine in your workspace, progress in a thread, results with buttons.
Image work happens in `atelier worker` processes; run at least one with the same settings (it needs the bot
token too, to post progress and results).

Set it up once:
  1. Create the app at https://api.slack.com/apps: Create New App -> From an app manifest, pick the
     workspace and paste slack-manifest.yml (in Atelier's repository). It asks for the scopes
     {", ".join(SCOPES)}, registers /imagine, /upscale, /inpaint and /atelier and the message shortcuts,
     subscribes to app_mention and reaction_added, and turns on interactivity and Socket Mode.
  2. Install it (Install App -> Install to Workspace) and copy the Bot User OAuth Token (xoxb-...) into
     ATELIER_SLACK_BOT_TOKEN (or a file named by ATELIER_SLACK_BOT_TOKEN_FILE). Never commit it.
  3. Choose how Slack reaches you:
     - Socket Mode (the manifest's default; no public URL, works behind NAT): under Basic Information ->
       App-Level Tokens create a token with the connections:write scope (xapp-...) and set
       ATELIER_SLACK_APP_TOKEN.
     - HTTP mode: set socket_mode_enabled: false in the manifest, point the slash commands, event
       subscriptions and interactivity at https://<your host>/slack/events (HTTPS, a reverse proxy in front
       of ATELIER_SLACK_PORT, default 3000), and set ATELIER_SLACK_SIGNING_SECRET from Basic Information.
  4. Start it: `atelier serve` runs the app and a worker per GPU (`atelier doctor` checks the tokens first),
     or `atelier slack` next to `atelier worker`. The log says "signed in to team ..." and then "Socket Mode,
     connected" or "HTTP mode, listening on ...".
  5. Invite the bot to a channel (/invite @Atelier) and try `/imagine a lighthouse at dawn --ar 16:9`.
     Under a single image come the editing loop's buttons (vary, upscale, zoom out, pan, make square);
     react with :mag: to an image (ours or a member's) to upscale it; `/atelier settings` sets your own
     defaults, remix mode and private mode.

Optional: ATELIER_SLACK_ADMINS=U012AB3CD,... (admins besides the workspace's own), ATELIER_SLACK_REACTIONS
(which reaction does what), ATELIER_SLACK_API_BASE (GovSlack; keep the trailing slash).
"""
