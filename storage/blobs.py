"""Where image bytes live: a local folder by default, or any S3-compatible store (AWS, MinIO, moto) via aioboto3.

Keys are relative, slash-separated paths such as ``images/<job_id>/0.png``; both stores accept exactly the same
keys (see ``validate_key``), so a deployment can move from the folder to S3 by copying files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

MAX_KEY_LENGTH = 255  # the length of Image.blob_key


class BlobNotFound(KeyError):
    """No blob is stored under the key."""


@runtime_checkable
class BlobStore(Protocol):
    """Bytes by key. Writes are all-or-nothing: a reader sees the old blob, the new one, or none."""

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    async def get(self, key: str) -> bytes:
        """Raise ``BlobNotFound`` if nothing is stored under ``key``."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the blob; no error if it is already gone."""
        ...

    def describe(self, key: str) -> str:
        """Where the blob is, for humans (a path or an s3:// URL); never contains credentials."""
        ...

    async def close(self) -> None: ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative path, else raise a ``ValueError`` that says what is wrong.

    Segments are non-empty and do not start with a dot (no ``..`` escapes, no hidden files, and the local
    store's temporary files can never clash with a key); no backslashes, control characters or leading slash.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("a blob key must be a non-empty string such as 'images/<job_id>/0.png'")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"blob key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}")
    if "\\" in key:
        raise ValueError(f"blob key {key!r} contains a backslash; use '/' to separate folders")
    if any(ord(char) < 32 or ord(char) == 127 for char in key):
        raise ValueError(f"blob key {key!r} contains a control character")
    if key.startswith("/"):
        raise ValueError(f"blob key {key!r} is absolute; keys are relative, like 'images/<job_id>/0.png'")
    for segment in key.split("/"):
        if not segment:
            raise ValueError(f"blob key {key!r} has an empty path segment (a doubled or trailing '/')")
        if segment.startswith("."):
            raise ValueError(
                f"blob key {key!r} has a segment starting with '.' ({segment!r}); '..' and hidden names are not allowed"
            )
    return key


class LocalBlobStore:
    """Blobs as files under ``root``; each write goes to a temporary file that is then renamed into place.

    ``content_type`` is accepted for the protocol's sake and not stored: files are served by name, not by type.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file that holds (or would hold) the blob ``key``."""
        return self.root / validate_key(key)

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await asyncio.to_thread(self._write, self.path(key), data)

    async def get(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._remove, self.path(key))

    def describe(self, key: str) -> str:
        return str(self.path(key))

    async def close(self) -> None:
        return None

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        # Drop folders the delete left empty (e.g. images/<job_id>/), up to but excluding the root.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                return
            parent = parent.parent


class S3BlobStore:
    """Blobs as objects in an S3 bucket, under an optional key prefix; one client, opened on first use."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        create_bucket: bool = False,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 blob store needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if self.prefix:
            validate_key(self.prefix.rstrip("/"))
        self.endpoint_url = endpoint_url
        self.region = region
        self._create_bucket = create_bucket
        # Credentials stay inside the session object; nothing this class prints or raises includes them.
        self._session = aioboto3.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._client_lock = asyncio.Lock()

    def __repr__(self) -> str:
        endpoint = _without_userinfo(self.endpoint_url) if self.endpoint_url else "aws"
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint={endpoint!r})"

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        object_key = self._object_key(key)
        client = await self._get_client()
        await client.put_object(Bucket=self.bucket, Key=object_key, Body=data, ContentType=content_type)

    async def get(self, key: str) -> bytes:
        object_key = self._object_key(key)
        client = await self._get_client()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _is_missing(exc):
                raise BlobNotFound(key) from None
            raise
        async with response["Body"] as body:
            return await body.read()

    async def exists(self, key: str) -> bool:
        object_key = self._object_key(key)
        client = await self._get_client()
        try:
            await client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        client = await self._get_client()
        await client.delete_object(Bucket=self.bucket, Key=object_key)

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object_key(key)}"

    async def close(self) -> None:
        async with self._client_lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def _object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._client_lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                # Path-style addressing: MinIO and other self-hosted endpoints have no per-bucket hostnames.
                config = Config(s3={"addressing_style": "path"}) if self.endpoint_url else None
                client = await stack.enter_async_context(
                    self._session.client("s3", endpoint_url=self.endpoint_url, config=config)
                )
                try:
                    if self._create_bucket:
                        await self._ensure_bucket(client)
                except BaseException:
                    await stack.aclose()
                    raise
                self._stack, self._client = stack, client
        return self._client

    async def _ensure_bucket(self, client: Any) -> None:
        try:
            await client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if not _is_missing(exc):
                raise
        extra: dict[str, Any] = {}
        if self.region and self.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await client.create_bucket(Bucket=self.bucket, **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise


def open_blob_store(
    url: str,
    *,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> BlobStore:
    """Build the store ``url`` names: a folder (``data/blobs``, ``file:///abs``, ``file:rel``) or ``s3://bucket/prefix``.

    Credentials come as arguments, never inside the URL. An S3 bucket that does not exist yet is created on
    first use, which is what a fresh MinIO in docker-compose needs.
    """
    if not url:
        raise ValueError("blob store URL is empty: use a folder like 'data/blobs' or 's3://bucket/prefix'")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if "@" in parts.netloc:
            raise ValueError("put S3 credentials in the access key settings, not in the blob store URL")
        if not parts.netloc:
            raise ValueError("an S3 blob store URL needs a bucket: s3://bucket or s3://bucket/prefix")
        return S3BlobStore(
            parts.netloc,
            prefix=parts.path,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            create_bucket=True,
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(
                f"file URL names host {parts.netloc!r}: use file:///absolute/path or file:relative/path"
            )
        if not parts.path:
            raise ValueError(
                "a file: blob store URL needs a path: file:///absolute/path or file:relative/path"
            )
        return LocalBlobStore(Path(parts.path))
    if scheme:
        raise ValueError(f"unsupported blob store URL scheme {scheme!r}: use a folder path, file:… or s3://…")
    return LocalBlobStore(Path(url))


def _is_missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=host).geturl()
