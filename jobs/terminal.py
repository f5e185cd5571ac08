"""The CLI's replier: a rich progress bar on stderr, and the finished images copied into a folder.

It is fed by `replier.relay` from the job's event stream, so it works the same whether the worker runs in the
CLI's own process or on another machine.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobs.replier import StoredImage
from storage.blobs import BlobStore
from storage.models import Job


class TerminalReplier:
    def __init__(self, blobs: BlobStore, out_dir: Path, console: Console | None = None) -> None:
        self._blobs, self._out_dir = blobs, out_dir
        self._console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task = None
        self.paths: list[Path] = []
        self.error: str | None = None

    async def queued(
        self, job: Job, position: int | None, eta_s: float | None, *, lane: str = "fast"
    ) -> None:
        where = f"position {position}" if position else "waiting"
        self._console.print(f"[dim]{job.id}[/] queued ({where}{', relax lane' if lane == 'relax' else ''})")

    async def progress(self, job: Job, step: int, total: int, preview: PILImage.Image | None) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(f"{job.kind} {job.model}", total=total)
        self._progress.update(self._task, completed=step, total=total)

    async def result(self, job: Job, images: list[StoredImage]) -> None:
        self._stop()
        self._out_dir.mkdir(parents=True, exist_ok=True)
        for image in images:
            path = self._out_dir / f"{job.id}-{image.index}.png"
            path.write_bytes(await self._blobs.get(image.blob_key))
            self.paths.append(path)
            if image.flagged:  # the person at the terminal asked for it: saved, with a note
                self._console.print(f"[yellow]{path} was flagged by the safety filter[/]")

    async def failure(self, job: Job, message: str) -> None:
        self._stop()
        self.error = message

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
