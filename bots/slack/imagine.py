"""`/imagine <prompt> [--flags]` and `@Atelier <prompt> [--flags]`: text to image, with Discord's flags.

Both acknowledge first (the slash command with `ack()`, the mention by bolt itself), then validate with
`bots.commands` and the model registry, then submit. Bad input gets an ephemeral message that says what is
wrong, and nothing is enqueued. A mention starts its thread under the mention; a command starts a new one.

`--lora name:0.8` takes the workspace's own trained LoRAs (`/atelier lora train`) and the installation's shared
ones; a LoRA of another workspace is unknown here, and the message lists the names this workspace has.
"""

from __future__ import annotations

import logging
import re
import secrets

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import FLAGS, IMAGE_PROMPT_ONLY, CommandError, merge_options, parse_prompt, prompt_lane
from bots.member_defaults import MemberDefaults, member_defaults
from bots.slack import answers, guided
from bots.slack.services import SlackServices
from bots.slack.submit import submit, submit_command
from bots.slack.workspace import Workspace
from engine.guided_requests import scales_hires
from engine.lora import LoraLibrary, TenantLoras
from engine.registry import Registry
from jobs.specs import MAX_SEED, Imagine, imagine_spec
from jobs.training import tenant_loras

log = logging.getLogger(__name__)

USAGE = "Usage: `/imagine a lighthouse at dawn --ar 16:9 --seed 7 --steps 30 --no fog --model sd15 --n 2`"
MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
GUIDED_ONLY = ("control", "control_weight", "sref_weight", "cref_weight")  # options only /imagine reads


def imagine_from_text(
    registry: Registry,
    text: str,
    *,
    tiny: bool,
    loras: TenantLoras | None = None,
    defaults: MemberDefaults | None = None,
) -> Imagine:
    """Turn what someone typed into a checked spec; every problem is a CommandError with the reason. `--lora`
    names are looked up in `loras` (the workspace's view; without one LoRAs are refused) and carried in the
    spec as the names the worker resolves (`TenantLoras.spec_name`). `defaults`: the member's own defaults and
    the workspace's styles (`bots.member_defaults`)."""
    if not text.strip():
        raise CommandError(f"describe the image you want. {USAGE}")
    parsed = parse_prompt(text)
    options = merge_options(parsed, {})
    wanted = options.pop("lora", [])
    if options.pop("iw", None) is not None:
        raise CommandError(IMAGE_PROMPT_ONLY)
    guidance = {name for name in GUIDED_ONLY if name in options} | (
        {"hires"} if scales_hires(options.get("hires")) else set()
    )
    for flag, (name, _) in FLAGS.items():  # a mention: guidance needs /imagine (`guided.guided_request`)
        if name in guidance:
            raise CommandError(f"{flag} works with the /imagine command, not in a mention")
    if defaults is not None:
        options = defaults.apply(options)
    try:
        spec = imagine_spec(
            registry,
            prompt=parsed.prompt,
            styles=None if defaults is None else defaults.styles,
            tiny=tiny,
            random_seed=secrets.randbelow(MAX_SEED + 1),
            loras=wanted,  # type: ignore[arg-type]  # parse_prompt makes (name, weight) pairs
            lora_library=loras,  # type: ignore[arg-type]  # a tenant's view has the library interface
            **options,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if loras is None or not spec.loras:
        return spec
    return spec.model_copy(update={"loras": [(loras.spec_name(name), weight) for name, weight in spec.loras]})


async def imagine_request(services: SlackServices, workspace: Workspace, text: str) -> Imagine:
    """`imagine_from_text` with the LoRAs the asking workspace may use."""
    tenant = await workspace.tenant()
    loras = await tenant_loras(tenant, LoraLibrary(services.loras_dir))
    defaults = await member_defaults("slack", tenant, workspace.user_id or "")
    return imagine_from_text(
        services.registry, text, tiny=services.tiny_models, loras=loras, defaults=defaults
    )


def register(app: AsyncApp, services: SlackServices) -> None:
    """Add the `/imagine` command and the `app_mention` listener to `app`."""

    @app.command("/imagine")
    async def imagine_command(
        ack: AsyncAck, command: dict, client: AsyncWebClient, respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        # trigger_id is unique per invocation: a redelivered command (Socket Mode) maps to the same job
        # (submit_command's request id).
        try:
            text = command.get("text", "")
            if guided.wants_guidance(text):
                spec = await guided.guided_request(services, client, text)
            else:
                spec = await imagine_request(services, context["workspace"], text)
            # --relax / --fast (jobs.relax); None: the member's lane from /atelier settings
            lane = prompt_lane(text)
            await submit_command(client, services, spec, command, context["workspace"], lane)
        except CommandError as exc:
            await answers.warn(respond, exc)

    @app.event("app_mention")
    async def imagine_mention(event: dict, client: AsyncWebClient, context: AsyncBoltContext) -> None:
        channel, ts = event["channel"], event["ts"]
        thread_ts = event.get("thread_ts") or ts
        # One message is one request, whichever delivery of its event reaches us.
        request_id = f"slack:message:{context.team_id}:{channel}:{ts}"
        try:
            text = MENTION.sub(" ", event.get("text", ""))
            spec = await imagine_request(services, context["workspace"], text)
            await submit(
                client,
                services,
                spec,
                request_id=request_id,
                channel=channel,
                thread_ts=thread_ts,
                workspace=context["workspace"],
                lane=prompt_lane(text),
            )
        except CommandError as exc:
            await answers.warn_in(
                client, channel=channel, user=event["user"], thread_ts=thread_ts, problem=exc
            )
