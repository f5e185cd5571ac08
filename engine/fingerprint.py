"""What exactly a model or a LoRA was: the revision and content hash a recipe records (jobs.recipe), so a replay
can tell whether it runs on the same weights.

A content hash is the SHA-256 over every file of the weights (sorted relative paths and their SHA-256s), so two
copies of the same weights anywhere hash the same. Files are read once per process, cached by (path, size,
mtime); a Hugging Face cache file whose blob is named by its SHA-256 (Git LFS) is not read at all. A model held
only on the hub and not downloaded yet has no hash ("" in the recipe).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path

from engine.registry import Preset

_SHA256_NAME = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class FileDigests:
    """SHA-256 of files, each read at most once while its size and modification time stay the same."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def of(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._known:
                return self._known[key]
        target = path.resolve()
        # The hub's cache names an LFS blob by its content's SHA-256: that is the hash, no read needed.
        digest = target.name if path.is_symlink() and _SHA256_NAME.fullmatch(target.name) else _read(target)
        with self._lock:
            self._known[key] = digest
        return digest

    def of_tree(self, root: Path) -> str:
        """One hash for a file, or for a folder: over each file's relative path and SHA-256, in sorted order."""
        if root.is_file():
            return self.of(root)
        total = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            total.update(f"{path.relative_to(root).as_posix()}\0{self.of(path)}\n".encode())
        return total.hexdigest()


def model_identity(preset: Preset, cache_dir: Path, digests: FileDigests) -> dict[str, str]:
    """The preset's name, source, revision (a hub snapshot's commit; "" elsewhere), scheduler class and
    content hash, as far as this machine can tell without downloading anything."""
    folder, revision = _local_weights(preset, cache_dir)
    identity = {"preset": preset.name, "source": preset.source, "revision": revision, "sha256": ""}
    identity["scheduler"] = ""
    if folder is not None:
        identity["sha256"] = digests.of_tree(folder)
        identity["scheduler"] = _scheduler(folder)
    return identity


def _local_weights(preset: Preset, cache_dir: Path) -> tuple[Path | None, str]:
    if preset.is_tiny:  # built from configs into the cache (engine.tiny and kin) when the model first ran
        built = Path(cache_dir) / preset.name
        return (built if built.exists() else None), ""
    local = Path(preset.source).expanduser()
    if local.exists():
        return local, ""
    try:  # a hub repository id: its downloaded snapshot, if any; never a download here
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(preset.source, local_files_only=True))
    except Exception:
        return None, ""
    return folder, folder.name


def _scheduler(folder: Path) -> str:
    config = folder / "scheduler" / "scheduler_config.json"
    try:
        return str(json.loads(config.read_text()).get("_class_name", ""))
    except (OSError, ValueError):
        return ""


def _read(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
