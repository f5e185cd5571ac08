"""Training datasets from uploads: a zip checked from its central directory, extracted safely into a job's own
temporary folder, then checked.

A zip is untrusted: a member may name a path outside the folder (`../x.png`, `/etc/x`), be a symlink, carry a
name no file system takes (300 characters, a newline), come in tens of thousands, or claim a small size and expand
to gigabytes (a zip bomb). So before anything is written the central directory is read and refused, with one
line naming the problem, for too many members (`MAX_MEMBERS`), a declared size past `max_member_bytes` or, summed,
past `max_total_bytes`, a compression ratio past `MAX_RATIO`, or a name that is unsafe or too long. Only regular
files are then written, flat into the folder, and bytes are counted while they are decompressed, because declared
sizes can lie: a member past its limits stops the extraction, and one that differs from its header is refused as
damaged. Each image must then decode (`jobs.inputs.read_image`), captions are `.txt` files beside them, and
anything else is refused with its name, so a person knows what to remove.

All of it is blocking file and CPU work: callers on an event loop run it with `asyncio.to_thread`.
"""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from engine.training_config import IMAGE_SUFFIXES, MAX_IMAGES, MIN_IMAGES
from jobs.inputs import read_image
from jobs.text import control_character

MAX_MEMBER_BYTES = 20 * 2**20
MAX_TOTAL_BYTES = 500 * 2**20
MAX_MEMBERS = 1000
"""Entries in the central directory, folders and ignored files included: 200 images, 200 captions, the `._`
twins macOS adds to each and their folders come to about 810."""
MAX_NAME_CHARS = 120
MAX_NAME_BYTES = 255
"""A member's file name (its last path part, what is written): ext4 and most file systems take 255 bytes."""
MAX_PATH_CHARS = 1024
"""A member's whole name in the zip, folders included."""
MAX_RATIO = 100
RATIO_FLOOR = 2**20
"""A member declared larger than `RATIO_FLOOR` may expand at most `MAX_RATIO` times its compressed size. Images
hardly compress (PNG and JPEG already are); a run of zeros deflates about 1000 times: that is a bomb."""
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

    Raises DatasetError for an unsafe or oversized zip before anything is written (`check_zip`), or for a member
    that turns out larger than declared or damaged while writing it; files already written then stay inside
    `folder`, which the caller removes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise DatasetError("the upload is not a zip file") from None
    with archive:
        members = check_zip(archive, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes)
        written: list[Path] = []
        total = 0
        for member, name in members:
            target = folder / name
            try:
                with archive.open(member) as source, target.open("xb") as sink:
                    written.append(target)
                    size = 0
                    while chunk := source.read(CHUNK):
                        size += len(chunk)
                        total += len(chunk)
                        if size > min(member.file_size, max_member_bytes):
                            raise DatasetError(
                                f"{_shown(member.filename)} expands to more than "
                                f"{min(member.file_size, max_member_bytes) / 2**20:g} MiB"
                            )
                        if total > max_total_bytes:
                            raise DatasetError(
                                f"the zip expands to more than {max_total_bytes / 2**20:g} MiB"
                            )
                        sink.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError):
                raise DatasetError(
                    f"{_shown(member.filename)} in the zip is damaged (its size or checksum does not match)"
                ) from None
            except (RuntimeError, NotImplementedError):  # encrypted, or a compression zipfile cannot read
                raise DatasetError(
                    f"{_shown(member.filename)} in the zip is encrypted or compressed in a way Atelier cannot "
                    "read: zip it again without a password"
                ) from None
    return written


def check_zip(
    archive: zipfile.ZipFile,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> list[tuple[zipfile.ZipInfo, str]]:
    """The members to extract with the file name each is written under, checked from the central directory
    alone; DatasetError, one line naming the problem, for anything past the limits above or unsafe."""
    entries = archive.infolist()
    if len(entries) > MAX_MEMBERS:
        raise DatasetError(
            f"the zip holds {len(entries)} entries; the limit is {MAX_MEMBERS} "
            f"(a dataset is at most {MAX_IMAGES} images and their captions)"
        )
    # not `is_dir()`: it indexes the name, and a damaged directory can hold an empty one (refused by name below)
    members = [m for m in entries if not m.filename.endswith("/") and not _ignored(m.filename)]
    total = 0
    for member in members:
        shown = _shown(member.filename)
        if member.file_size > max_member_bytes:
            raise DatasetError(
                f"{shown} expands to {member.file_size / 2**20:.1f} MiB; "
                f"the limit is {max_member_bytes / 2**20:g} MiB a file"
            )
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
            raise DatasetError(
                f"{shown} expands {ratio:.0f} times its compressed size; the limit is {MAX_RATIO} times "
                "(it looks like a zip bomb)"
            )
        total += member.file_size
    if total > max_total_bytes:
        raise DatasetError(
            f"the zip expands to {total / 2**20:.1f} MiB; the limit is {max_total_bytes / 2**20:g} MiB"
        )
    names = [_safe_name(m) for m in members]  # every name is checked before anything is written
    if len(set(n.lower() for n in names)) != len(names):
        raise DatasetError("the zip holds two files with the same name (in different folders): rename one")
    return list(zip(members, names, strict=True))


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
    """The member's file name, flattened; DatasetError for a path that could leave the folder, a link, a name
    with control characters or one too long to write."""
    raw = member.filename
    shown = _shown(raw)
    if len(raw) > MAX_PATH_CHARS:
        raise DatasetError(
            f"the zip member {shown} has a name of {len(raw)} characters; the limit is {MAX_PATH_CHARS}"
        )
    if (bad := control_character(raw)) is not None:
        raise DatasetError(f"the zip member {shown} has a control character ({bad}) in its name: rename it")
    path = PurePosixPath(raw.replace("\\", "/"))
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":") or ".." in path.parts:
        raise DatasetError(f"the zip member {shown} points outside the dataset folder: refused")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise DatasetError(f"the zip member {shown} is a symbolic link: refused")
    name = path.name
    if not name or name.startswith("."):
        raise DatasetError(f"the zip member {shown} has no usable file name")
    if len(name) > MAX_NAME_CHARS or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise DatasetError(
            f"the zip member {shown} has a file name of {len(name)} characters; "
            f"the limit is {MAX_NAME_CHARS}: rename it"
        )
    return name


def _shown(name: str, limit: int = 60) -> str:
    """A member name for a message: quoted and escaped (no newline gets through), cut to `limit` characters."""
    return repr(name if len(name) <= limit else name[: limit - 1] + "…")
