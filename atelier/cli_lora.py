"""`atelier lora …`: train, list and delete a tenant's LoRAs from a terminal.

    atelier lora train DATASET_DIR --name ink --trigger "zq ink style" --tenant discord:1234 [--steps 1500]
    atelier lora list --tenant discord:1234
    atelier lora delete ink --tenant discord:1234

`train` zips the folder's images and `.txt` captions, checks them as the worker will (3 to 200 images, nothing
else), and enqueues a training job on the training queue; it follows the job (step and loss on stderr) and
prints the paths of the sample images, then the LoRA's name. With no worker serving the training queue it trains
in this process. Then `atelier imagine "…" --lora ink:0.8 --tenant discord:1234` uses it, for that tenant only.
Bad input exits with status 2 before anything is stored or charged; a quota refusal with status 3.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from atelier.cli import CLI_TENANT, CLI_USER, UsageError
from atelier.cli_worker import create_train_worker
from atelier.jobrun import while_serving
from atelier.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `lora` command and its subcommands to the `atelier` parser."""
    lora = sub.add_parser(
        "lora",
        help="train, list and delete a tenant's LoRAs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = lora.add_subparsers(dest="lora_command", required=True, metavar="ACTION")
    tenant_help = f"PLATFORM:ID whose LoRA it is, e.g. discord:1234 (default: {CLI_TENANT})"

    train = commands.add_parser("train", help="train a LoRA on a folder of images (captions in NAME.txt)")
    train.add_argument("dataset", type=Path, help="folder of 3 to 200 images, optional NAME.txt captions")
    train.add_argument("--name", required=True, help="the LoRA's name, used as --lora NAME:WEIGHT")
    train.add_argument("--trigger", required=True, help="the word that calls it up; the caption by default")
    train.add_argument("--tenant", default=CLI_TENANT, metavar="PLATFORM:ID", help=tenant_help)
    train.add_argument("--user", default=CLI_USER, metavar="ID", help=f"who trains it (default: {CLI_USER})")
    train.add_argument(
        "--model", help="base model preset, SD 1.5 or SDXL family (default: the default model)"
    )
    train.add_argument("--steps", type=int, help="training steps (default: 1500 for SD 1.5, 2000 for SDXL)")
    train.add_argument(
        "--rank", type=int, help="LoRA rank (default: 16 for SD 1.5, 32 for SDXL); alpha = rank"
    )
    train.add_argument("--learning-rate", type=float, help="AdamW learning rate (default: 1e-4)")
    train.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: 100)")
    train.add_argument("--seed", type=int, default=0, help="seed of the training noise and the samples")
    train.add_argument(
        "--out", type=Path, default=Path("out"), help="folder for sample images (default: out)"
    )

    listing = commands.add_parser("list", help="a tenant's LoRAs")
    listing.add_argument("--tenant", default=CLI_TENANT, metavar="PLATFORM:ID", help=tenant_help)

    delete = commands.add_parser("delete", help="delete a tenant's LoRA and its files")
    delete.add_argument("name")
    delete.add_argument("--tenant", default=CLI_TENANT, metavar="PLATFORM:ID", help=tenant_help)


async def _lora(settings: Settings, args: argparse.Namespace) -> int:
    from quotas.policy import parse_tenant_ref

    try:
        tenant_ref = parse_tenant_ref(args.tenant)
        dataset = None
        if args.lora_command == "train":
            from jobs.datasets import zip_folder

            if not args.dataset.is_dir():
                raise ValueError(f"{args.dataset} is not a folder of images")
            dataset = zip_folder(args.dataset)
    except ValueError as exc:
        raise UsageError(exc) from None

    from atelier.runtime import Runtime
    from storage.models import get_or_create_tenant

    async with Runtime.open(settings) as runtime:
        tenant = await get_or_create_tenant(*tenant_ref)
        if args.lora_command == "list":
            return _list(await _rows(tenant))
        if args.lora_command == "delete":
            return await _delete(runtime, tenant, args.name)
        return await _train(runtime, tenant, args, dataset)


async def _rows(tenant):
    from jobs.training import list_loras

    return await list_loras(tenant)


def _list(rows) -> int:
    for row in rows:
        print(f"{row.name}\t{row.status.value}\t{row.base_model}\ttrigger: {row.trigger}\tsteps: {row.steps}")
    if not rows:
        print("no LoRAs", file=sys.stderr)
    return 0


async def _delete(runtime, tenant, name: str) -> int:
    from jobs.training import delete_lora
    from storage.lora_models import LoraModel

    lora = await LoraModel.get_or_none(tenant=tenant, name=name)
    if lora is None:
        names = [row.name for row in await _rows(tenant)]
        known = f"; its LoRAs: {', '.join(names)}" if names else ": it has none"
        raise UsageError(f"{tenant} has no LoRA named {name!r}{known}")
    await delete_lora(runtime.blobs, lora)
    print(f"deleted LoRA {name} of {tenant}", file=sys.stderr)
    return 0


async def _train(runtime, tenant, args: argparse.Namespace, dataset: bytes) -> int:
    from jobs import events
    from jobs.replier import StoredImage
    from jobs.specs import ReplyTarget
    from jobs.training import request_training
    from storage.models import get_or_create_user

    settings = runtime.settings
    try:
        queued = await request_training(
            runtime.redis,
            runtime.blobs,
            runtime.registry,
            tenant=tenant,
            user=await get_or_create_user(tenant, args.user),
            name=args.name,
            trigger=args.trigger,
            dataset_zip=dataset,
            request_id=f"cli:{uuid.uuid4()}",
            reply_target=ReplyTarget(platform="cli"),
            queue_name=settings.train_queue_name,
            tiers=settings.load_tiers(),
            model=args.model,
            tiny=settings.tiny_models,
            steps=args.steps,
            rank=args.rank,
            learning_rate=args.learning_rate,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UsageError(exc) from None
    print(f"{queued.job_id} queued for training", file=sys.stderr)
    images: list[StoredImage] = []
    error = None

    async def follow() -> None:
        nonlocal images, error
        async for event, data in events.follow(runtime.redis, queued.job_id):
            if event == "training":
                print(f"step {data['step']}/{data['total']} loss {data['loss']:.4f}", file=sys.stderr)
            elif event == "resumed":
                print(f"resumed from the checkpoint at step {data['step']}", file=sys.stderr)
            elif event == "result":
                images = [StoredImage(**image) for image in data["images"]]
            elif event in ("failed", "cancelled"):
                error = data.get("message", event)

    await while_serving(
        runtime,
        settings.train_queue_name,
        lambda: create_train_worker(
            settings, runtime.worker_services(), burst=True, handle_signals=False, only_jobs={queued.job_id}
        ),
        follow(),
    )
    if error is not None:
        print(f"atelier: training job {queued.job_id} failed: {error}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for image in images:
        path = args.out / f"{queued.job_id}-sample-{image.index}.png"
        path.write_bytes(await runtime.blobs.get(image.blob_key))
        print(path)
    print(f"LoRA {args.name} is ready for {tenant}: --lora {args.name}:0.8 --tenant {tenant}")
    return 0


COMMANDS = {"lora": _lora}
