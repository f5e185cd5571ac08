"""`atelier admin safety` and the chats' `/atelier safety`: the filter switch, per-channel policies, the
server's prompt word list and the review log (storage.moderation; what they mean: jobs.moderation and
jobs.prompt_check)."""

from __future__ import annotations

import argparse

from quotas.admin_tiers import TenantRef
from quotas.policy import tenant_for
from storage.moderation import (
    POLICIES,
    SERVER_DEFAULT,
    ChannelPolicy,
    SafetyReview,
    SafetyWord,
    check_policy,
    check_word,
    set_policy,
)
from storage.preferences import preferences_of, update_preferences


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("state", nargs="?", help="on or off (leave out to show it)")
    parser.add_argument("--policy", help=f"what flagged images do: {', '.join(POLICIES)}")
    parser.add_argument("--channel", help="the channel id --policy is for (default: the whole server)")
    parser.add_argument(
        "--server", action="store_true", help="--policy is the server's default (in chat: not this channel's)"
    )
    parser.add_argument("--add-word", help="refuse prompts with this word")
    parser.add_argument("--add-pattern", help="refuse prompts matching this regular expression")
    parser.add_argument("--remove", help="a word or pattern to stop refusing")
    parser.add_argument("--words", action="store_true", help="list the words and patterns")
    parser.add_argument(
        "--review-log", action="store_true", help="the latest review decisions, who made them"
    )


def check_arguments(args: argparse.Namespace) -> None:
    if args.state not in (None, "on", "off"):
        raise ValueError(f"the safety filter is on or off (got {args.state!r})")
    if args.policy is not None:
        check_policy(args.policy)
    elif args.channel is not None or args.server:
        raise ValueError("--channel and --server go with --policy")
    if args.channel is not None and args.server:
        raise ValueError("--policy is for a --channel or the --server, not both")
    if args.add_word is not None:
        args.add_word = check_word(args.add_word, pattern=False)
    if args.add_pattern is not None:
        args.add_pattern = check_word(args.add_pattern, pattern=True)


async def run(ref: TenantRef, name: str, args: argparse.Namespace, *, by: str = "") -> str:
    tenant = await tenant_for(ref)
    lines = []
    if args.state is not None:
        await update_preferences(tenant, safety=args.state == "on")
    if args.policy is not None:
        await set_policy(tenant, args.channel, args.policy, by=by)
        where = f"channel {args.channel}" if args.channel else "the server default"
        lines.append(f"{name}: safety policy of {where} is now {args.policy}")
    for text, pattern in ((args.add_word, False), (args.add_pattern, True)):
        if text is not None:
            await SafetyWord.get_or_create(
                defaults={"added_by": by}, tenant=tenant, text=text, pattern=pattern
            )
            lines.append(f"{name}: prompts {'matching' if pattern else 'with'} {text!r} are refused")
    if args.remove is not None:
        removed = await SafetyWord.filter(tenant=tenant, text__in=[args.remove, args.remove.lower()]).delete()
        lines.append(f"{name}: {args.remove!r} {'removed' if removed else 'was not on the list'}")
    if args.words:
        words = await SafetyWord.filter(tenant=tenant).order_by("id")
        listed = [f"{'pattern' if w.pattern else 'word'} {w.text!r}" for w in words]
        lines.append(f"{name}: refused prompts: " + ("; ".join(listed) if listed else "none of its own"))
    if args.review_log:
        decided = (
            await SafetyReview.filter(tenant=tenant).exclude(decision="").order_by("-decided_at").limit(50)
        )
        lines += [review_line(r) for r in decided] or [f"{name}: no review decisions yet"]
    if not lines:
        on = (await preferences_of(tenant)).safety
        policies = {p.channel: p.policy for p in await ChannelPolicy.filter(tenant=tenant)}
        default = policies.pop(SERVER_DEFAULT, "age-restricted" if on else "allow")
        lines.append(f"{name}: safety filter {'on' if on else 'off'}; flagged images: {default}")
        lines += [f"  channel {channel}: {policy}" for channel, policy in sorted(policies.items())]
    return "\n".join(lines)


def review_line(review: SafetyReview) -> str:
    when = review.decided_at.strftime("%Y-%m-%d %H:%M UTC") if review.decided_at else "-"
    return (
        f"#{review.id} image {review.image_id} of job {review.job_id}: {review.decision} by "
        f"{review.reviewer} at {when}"
    )
