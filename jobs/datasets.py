"""Training datasets from uploads: a zip extracted safely into a job's own temporary folder, then checked.

A zip is untrusted: a member may name a path outside the folder (`../x.png`, `/etc/x`), be a symlink, or claim
a small size in its header and expand to gigabytes (a zip bomb). So every member's name is checked before
anything is written, only regular files are written, flat into the folder, and bytes are counted while they are
decompressed: a member past `max_member_bytes`, or the whole past `max_total_bytes`, stops the extraction. Each
image must then decode (`jobs.inputs.read_image`), captions are `.txt` files beside them, and anything else is
refused with its name, so a person knows what to remove.
"""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from engine.training_config import IMAGE_SUFFIXES, MAX_IMAGES, MIN_IMAGES
from jobs.inputs import read_image

MAX_MEMBER_BYTES = 20 * 2**20
MAX_TOTAL_BYTES = 500 * 2**20
MAX_CAPTION_BYTES = 4096
CHUNK = 64 * 1024
IGNORED = ("__MACOSX/", ".DS_Store", "Thumbs.db")


class DatasetError(ValueError):
    """An upload that cannot be a training dataset; the message names the file and what to fix."""


def extract_zip(
    data: bytes,
    folder: Path,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> list[Path]:
    """Extract the zip `data` into `folder` (created; must be the job's own) and return the files written.

    Raises DatasetError for an unsafe or oversized member before or while writing it; files already written
    stay inside `folder`, which the caller removes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DatasetError("the upload is not a zip file") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and not _ignored(m.filename)]
        names = [_safe_name(m) for m in members]  # every name is checked before anything is written
        if len(set(n.lower() for n in names)) != len(names):
            raise DatasetError(
                "the zip holds two files with the same name (in different folders): rename one"
            )
        written: list[Path] = []
        total = 0
        for member, name in zip(members, names, strict=True):
            target = folder / name
            with archive.open(member) as source, target.open("xb") as sink:
                written.append(target)
                size = 0
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    total += len(chunk)
                    if size > max_member_bytes:
                        raise DatasetError(
                            f"{member.filename} expands to more than {max_member_bytes / 2**20:g} MiB"
                        )
                    if total > max_total_bytes:
                        raise DatasetError(f"the zip expands to more than {max_total_bytes / 2**20:g} MiB")
                    sink.write(chunk)
    return written


def check_dataset(folder: Path) -> int:
    """Check the files in `folder` as a dataset: 3 to 200 images that decode, optional `.txt` captions beside
    them, nothing else. Returns the number of images; DatasetError naming the first problem."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    stems = {p.stem for p in images}
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".txt":
            if path.stem not in stems:
                raise DatasetError(
                    f"{path.name} is a caption without an image named {path.stem}.png (or .jpg)"
                )
            if path.stat().st_size > MAX_CAPTION_BYTES:
                raise DatasetError(
                    f"{path.name} is longer than {MAX_CAPTION_BYTES} bytes: keep captions short"
                )
        elif suffix not in IMAGE_SUFFIXES:
            raise DatasetError(
                f"{path.name} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a .txt caption: remove it"
            )
    if not MIN_IMAGES <= len(images) <= MAX_IMAGES:
        raise DatasetError(f"a LoRA needs between {MIN_IMAGES} and {MAX_IMAGES} images (got {len(images)})")
    for path in images:
        read_image(path.read_bytes(), name=path.name)  # InputImageError (a ValueError) names the file
    return len(images)


def zip_folder(folder: Path) -> bytes:
    """The images and captions directly in `folder`, as a zip (how the CLI uploads a dataset folder)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(Path(folder).iterdir()):
            if path.is_file() and not path.is_symlink() and not _ignored(path.name):
                archive.write(path, path.name)
    return buffer.getvalue()


def unpack_dataset(data: bytes, folder: Path) -> int:
    """`extract_zip` then `check_dataset`; on any error the folder is removed. Returns the image count."""
    try:
        extract_zip(data, folder)
        return check_dataset(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _ignored(name: str) -> bool:
    return any(part in name for part in IGNORED) or PurePosixPath(name).name.startswith("._")


def _safe_name(member: zipfile.ZipInfo) -> str:
    """The member's file name, flattened; DatasetError for a path that could leave the folder or a link."""
    raw = member.filename
    path = PurePosixPath(raw.replace("\\", "/"))
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":") or ".." in path.parts:
        raise DatasetError(f"the zip member {raw!r} points outside the dataset folder: refused")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise DatasetError(f"the zip member {raw!r} is a symbolic link: refused")
    name = path.name
    if not name or name.startswith("."):
        raise DatasetError(f"the zip member {raw!r} has no usable file name")
    return name
