"""What a job function may use: the narrow set of clients a worker builds once at start-up."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from arq.connections import ArqRedis

from engine.fingerprint import FileDigests
from engine.registry import Registry
from jobs.batching import GpuBatcher
from jobs.provenance import Credentials
from jobs.replier import Replier
from storage.blobs import BlobStore

if TYPE_CHECKING:  # torch is imported by workers only, never by the bots
    from engine.engine import Engine


@dataclass
class WorkerServices:
    """Built by the composition root and put in arq's ctx as `ctx["services"]`."""

    redis: ArqRedis
    registry: Registry
    engine: Engine
    blobs: BlobStore
    repliers: dict[str, Replier] = field(default_factory=dict)  # platform name -> its replier
    # One thread owns the GPU: torch work never runs on the event loop and never runs twice at once.
    gpu: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="gpu"))
    # Images per batched text-to-image call (ATELIER_MAX_BATCH); 1: every job runs alone.
    max_batch: int = 1
    # The operator's C2PA key (jobs.signing): every stored image is signed with it. None (only where a test
    # builds the services itself): images carry their recipe unsigned.
    credentials: Credentials | None = None
    digests: FileDigests = field(default_factory=FileDigests)  # model and LoRA hashes for recipes
    batcher: GpuBatcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.batcher = GpuBatcher(self.engine, self.gpu, max_images=self.max_batch)
