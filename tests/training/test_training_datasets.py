"""Dataset intake: unsafe zips are refused without writing outside the job's folder; bad datasets are named."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from jobs.datasets import DatasetError, check_dataset, extract_zip, unpack_dataset
from tests.training.conftest import png, zip_of


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_a_member_with_dot_dot_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    job = tmp_path / "job"
    data = zip_of({"ok.png": png(1), "../evil.png": png(2)})
    with pytest.raises(DatasetError, match=r"'\.\./evil\.png' points outside"):
        extract_zip(data, job)
    assert not (tmp_path / "evil.png").exists()
    assert _files(tmp_path) <= {job}  # checked before anything was written: not even ok.png


def test_absolute_paths_and_symlinks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="points outside"):
        extract_zip(zip_of({"/etc/evil.png": png(1)}), tmp_path / "a")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(DatasetError, match="symbolic link"):
        extract_zip(buffer.getvalue(), tmp_path / "b")
    assert not list((tmp_path / "b").iterdir())


def test_a_member_that_expands_past_its_declared_size_is_stopped_while_extracting(tmp_path: Path) -> None:
    # Declared sizes are checked before writing (tests/security); one that lies is caught while writing.
    job = tmp_path / "job"
    bomb = bytearray(zip_of({"bomb.png": b"\0" * (8 * 2**20)}))  # 8 MiB of zeros: a few KiB compressed
    central = bomb.index(b"PK\x01\x02")
    bomb[central + 24 : central + 28] = struct.pack("<I", 100)  # the central directory now claims 100 bytes
    with pytest.raises(DatasetError, match=r"'bomb\.png' in the zip is damaged"):
        extract_zip(bytes(bomb), job, max_member_bytes=2**20)
    assert _files(tmp_path) == {job, job / "bomb.png"}
    assert (job / "bomb.png").stat().st_size <= 100  # counted as written, never past the declared size
    with pytest.raises(DatasetError, match=r"the zip expands to 1\.1 MiB; the limit is 1 MiB"):
        extract_zip(
            zip_of({f"{i}.png": b"\0" * 600_000 for i in range(2)}), tmp_path / "total", max_total_bytes=2**20
        )
    assert not list((tmp_path / "total").iterdir())


def test_too_few_images_non_images_and_orphan_captions_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"between 3 and 200 images \(got 2\)"):
        unpack_dataset(zip_of({"a.png": png(1), "b.png": png(2)}), tmp_path / "few")
    assert not (tmp_path / "few").exists()  # removed on error
    with pytest.raises(DatasetError, match=r"notes\.pdf is neither an image"):
        unpack_dataset(
            zip_of({**{f"{i}.png": png(i) for i in range(3)}, "notes.pdf": b"%PDF"}), tmp_path / "pdf"
        )
    with pytest.raises(ValueError, match=r"fake\.png is not an image"):
        unpack_dataset(
            zip_of({**{f"{i}.png": png(i) for i in range(3)}, "fake.png": b"hello"}), tmp_path / "fake"
        )
    with pytest.raises(DatasetError, match=r"orphan\.txt is a caption without an image"):
        unpack_dataset(
            zip_of({**{f"{i}.png": png(i) for i in range(3)}, "orphan.txt": b"x"}), tmp_path / "cap"
        )
    with pytest.raises(DatasetError, match="not a zip file"):
        extract_zip(b"plain bytes", tmp_path / "nozip")


def test_a_good_dataset_is_flattened_and_counted(tmp_path: Path) -> None:
    data = zip_of(
        {
            "set/a.png": png(1),
            "set/b.png": png(2),
            "set/c.png": png(3),
            "set/a.txt": b"zq cat",
            "__MACOSX/._a.png": b"x",
        }
    )
    assert unpack_dataset(data, tmp_path / "ok") == 3
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["a.png", "a.txt", "b.png", "c.png"]
    assert check_dataset(tmp_path / "ok") == 3
