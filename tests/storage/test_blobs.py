"""Both blob stores pass the same tests: a local folder, and S3 through a real moto server on loopback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aioboto3
import pytest
import pytest_asyncio
from botocore.exceptions import ClientError

from storage.blobs import BlobNotFound, BlobStore, LocalBlobStore, S3BlobStore, open_blob_store

ACCESS_KEY = "AKIAATELIERTESTKEY01"
SECRET_KEY = "s3cr3t-Atelier-test-value-do-not-print"
PNG_LIKE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40 + b"\x00"

BAD_KEYS = [
    "",
    "../escape.png",
    "images/../../etc/passwd",
    "/absolute/0.png",
    "images\\job\\0.png",
    "images//0.png",
    "images/job/",
    ".hidden",
    "images/./0.png",
    "images/a\x00b.png",
    "x" * 256,
]


def _s3_store(endpoint: str, bucket: str, **overrides: object) -> S3BlobStore:
    options: dict[str, object] = {
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "prefix": "atelier",
        "create_bucket": True,
    }
    return S3BlobStore(bucket, **(options | overrides))  # type: ignore[arg-type]


@pytest_asyncio.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        blobs: BlobStore = open_blob_store(str(tmp_path / "blobs"))
    else:
        endpoint = request.getfixturevalue("moto_s3_endpoint")
        blobs = open_blob_store(
            f"s3://atelier-{uuid.uuid4().hex[:12]}/deploy/one",
            endpoint_url=endpoint,
            region="us-east-1",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
        )
    yield blobs
    await blobs.close()


async def test_put_get_exists_delete(store: BlobStore) -> None:
    key = "images/job-1/0.png"
    assert isinstance(store, BlobStore)
    assert not await store.exists(key)

    await store.put(key, PNG_LIKE, "image/png")
    assert await store.exists(key)
    assert await store.get(key) == PNG_LIKE

    await store.put(key, b"replaced")
    assert await store.get(key) == b"replaced"

    await store.delete(key)
    assert not await store.exists(key)
    with pytest.raises(BlobNotFound):
        await store.get(key)


async def test_missing_blobs(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound) as caught:
        await store.get("images/never/0.png")
    assert isinstance(caught.value, KeyError)
    assert caught.value.args == ("images/never/0.png",)
    await store.delete("images/never/0.png")  # no error

    await store.put("images/job/0.png", b"x")
    assert not await store.exists("images/job")  # a "folder" is not a blob
    with pytest.raises(BlobNotFound):
        await store.get("images/job")


async def test_empty_blobs_are_blobs(store: BlobStore) -> None:
    await store.put("inputs/empty.bin", b"")
    assert await store.exists("inputs/empty.bin")
    assert await store.get("inputs/empty.bin") == b""


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_unsafe_keys_are_refused_by_every_operation(store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="blob key"):
        await store.put(key, b"x")
    with pytest.raises(ValueError, match="blob key"):
        await store.get(key)
    with pytest.raises(ValueError, match="blob key"):
        await store.exists(key)
    with pytest.raises(ValueError, match="blob key"):
        await store.delete(key)
    with pytest.raises(ValueError, match="blob key"):
        store.describe(key)


async def test_concurrent_writers_leave_one_whole_blob(store: BlobStore) -> None:
    versions = [bytes([n]) * 100_000 for n in range(8)]

    await asyncio.gather(*(store.put("images/race/0.png", data) for data in versions))

    assert await store.get("images/race/0.png") in versions


async def test_nothing_says_the_secret(store: BlobStore) -> None:
    texts = [store.describe("images/job/0.png"), repr(store), str(store)]
    for text in texts:
        assert SECRET_KEY not in text
        assert ACCESS_KEY not in text
    assert texts[0].endswith("images/job/0.png")


async def test_local_store_writes_files_atomically_and_tidies_up(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.put("images/job-7/0.png", PNG_LIKE)
    await store.put("images/job-7/1.png", b"1")

    assert store.path("images/job-7/0.png") == tmp_path / "blobs" / "images" / "job-7" / "0.png"
    assert store.describe("images/job-7/0.png") == str(tmp_path / "blobs" / "images" / "job-7" / "0.png")
    assert (tmp_path / "blobs" / "images" / "job-7" / "0.png").read_bytes() == PNG_LIKE
    assert sorted(p.name for p in (tmp_path / "blobs" / "images" / "job-7").iterdir()) == ["0.png", "1.png"]

    await asyncio.gather(*(store.put("images/job-7/1.png", bytes([n]) * 100_000) for n in range(8)))
    names = sorted(p.name for p in (tmp_path / "blobs" / "images" / "job-7").iterdir())
    assert names == ["0.png", "1.png"]  # no temporary file left behind

    await store.delete("images/job-7/0.png")
    await store.delete("images/job-7/1.png")
    assert not (tmp_path / "blobs" / "images").exists()  # emptied folders go, the root stays
    assert (tmp_path / "blobs").is_dir()


async def test_s3_store_writes_under_its_prefix_with_one_client(moto_s3_endpoint: str) -> None:
    bucket = f"atelier-{uuid.uuid4().hex[:12]}"
    store = _s3_store(moto_s3_endpoint, bucket, prefix="/tenant-a/")
    try:
        await store.put("images/j/0.png", PNG_LIKE, "image/png")
        client = store._client
        assert client is not None
        await store.exists("images/j/0.png")
        await store.get("images/j/0.png")
        await store.delete("images/missing.png")
        assert store._client is client  # opened once, reused by every call

        assert store.describe("images/j/0.png") == f"s3://{bucket}/tenant-a/images/j/0.png"
        session = aioboto3.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
        )
        async with session.client("s3", endpoint_url=moto_s3_endpoint) as s3:
            listed = await s3.list_objects_v2(Bucket=bucket)
            head = await s3.head_object(Bucket=bucket, Key="tenant-a/images/j/0.png")
        assert [item["Key"] for item in listed["Contents"]] == ["tenant-a/images/j/0.png"]
        assert head["ContentType"] == "image/png"
        assert head["ContentLength"] == len(PNG_LIKE)
    finally:
        await store.close()
    assert store._client is None


async def test_s3_store_reports_a_missing_bucket_as_an_error_not_a_missing_blob(
    moto_s3_endpoint: str,
) -> None:
    store = _s3_store(moto_s3_endpoint, f"absent-{uuid.uuid4().hex[:12]}", create_bucket=False)
    try:
        with pytest.raises(ClientError, match="NoSuchBucket"):
            await store.get("images/j/0.png")
    finally:
        await store.close()


def test_open_blob_store_reads_folders_and_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plain = open_blob_store("data/blobs")
    absolute = open_blob_store(f"file://{tmp_path}/abs")
    relative = open_blob_store("file:rel/blobs")
    assert isinstance(plain, LocalBlobStore) and plain.root == tmp_path / "data" / "blobs"
    assert isinstance(absolute, LocalBlobStore) and absolute.root == tmp_path / "abs"
    assert isinstance(relative, LocalBlobStore) and relative.root == tmp_path / "rel" / "blobs"


def test_open_blob_store_reads_s3_urls() -> None:
    store = open_blob_store("s3://media/atelier/prod", endpoint_url="http://minio:9000", region="eu-west-1")
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("media", "atelier/prod/")
    assert (store.endpoint_url, store.region) == ("http://minio:9000", "eu-west-1")
    assert store.describe("images/j/0.png") == "s3://media/atelier/prod/images/j/0.png"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("gs://bucket/x", "unsupported blob store URL scheme 'gs'"),
        ("s3://", "needs a bucket"),
        ("file://otherhost/x", "host 'otherhost'"),
        ("s3://s3cr3t-id:s3cr3t-key@bucket/x", "credentials"),
    ],
)
def test_open_blob_store_refuses_bad_urls_without_echoing_secrets(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        open_blob_store(url)
    assert "s3cr3t" not in str(caught.value)
