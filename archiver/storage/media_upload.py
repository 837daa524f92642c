"""Media into S3, checked before it is stored, with memory bounded whatever its size.

Two ways, chosen per object by :func:`new_media_upload`:

* **Spooled** (media of a known length up to ``media_spool_max_bytes``, by default 5 GiB, S3's limit
  for one PutObject): the download is written to an unlinked temporary file while its SHA-256 is
  computed. Once the whole body has arrived and passed its checks (Content-Length, container
  structure) it is sent with one PutObject carrying that SHA-256 as its full-object checksum, which
  S3 verifies and reports back. A failed PUT is retried from the file, not from the provider.
* **In parts** (longer media, media of unknown length, or a disk without room for it): SHA-256 and
  the full-object CRC32 are computed over the stream as it arrives. Each part (``chunk_bytes``) is
  handed to a worker thread as soon as it is complete, which computes its CRC32 and uploads it, so
  downloading and uploading overlap. A part's bytes are kept until S3 has them (botocore retries
  them), and at most ``max_concurrency + 1`` parts exist at once: when they do, the download waits
  (TCP backpressure), and no disk is used. Only when the body has passed its checks is the multipart
  upload completed, with the full-object CRC32 that S3 verifies; otherwise it is aborted.

Either way nothing is stored unless the body is whole. Spooling is the default because it lets S3
verify the SHA-256 itself (a multipart full-object checksum can only be a CRC), and because it was
the faster of the two against the S3 server the tests and benchmarks use (``bench/RESULTS.md``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from archiver.storage.media_checks import HEADER_BYTES, MediaInvalid, validate_container
from archiver.storage.objects import ObjectStore, StoredObject, precondition_failed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from archiver.core.config import Settings

log = logging.getLogger(__name__)


def _b64_crc(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


#: S3 allows at most this many parts in one upload.
MAX_PARTS = 10_000


def part_size_for(expected_length: int | None, configured: int) -> int:
    """The configured part size, raised when a body this long would need more than 10,000 parts."""
    if expected_length is None:
        return configured
    return max(configured, -(-expected_length // MAX_PARTS))


#: Spool only if this much disk stays free once the media is written (other spools, logs, the OS).
SPOOL_FREE_RESERVE_BYTES = 512 * 1024 * 1024


def spool_fits(expected_length: int | None, max_bytes: int, free_bytes: int) -> bool:
    """Whether media of this declared length is spooled: known, within the limit, and room on disk."""
    return (
        expected_length is not None
        and expected_length <= max_bytes
        and free_bytes - expected_length >= SPOOL_FREE_RESERVE_BYTES
    )


@dataclass(frozen=True)
class MediaTarget:
    """Where the media goes, and what the object says of itself."""

    client: S3Client
    bucket: str
    key: str
    content_type: str
    metadata: dict[str, str]
    #: Added to every write (SSE-KMS: :attr:`ObjectStore.write_args`).
    write_args: dict[str, str] = field(default_factory=dict)


class _CheckedBody:
    """What either upload learns of the body as it arrives: its SHA-256, length and first bytes.
    Both write conditionally: an object already at the key is kept, never overwritten."""

    def __init__(self, target: MediaTarget) -> None:
        self.client, self.bucket, self.key = target.client, target.bucket, target.key
        self.write_args = target.write_args
        self.content_type, self.metadata = target.content_type, target.metadata
        self._sha256 = hashlib.sha256()
        self.size = 0
        self._header = bytearray()

    def _receive(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        if len(self._header) < HEADER_BYTES:
            self._header += chunk[: HEADER_BYTES - len(self._header)]
        self.size += len(chunk)

    def _existing(self, ours: StoredObject, crc32: str | None = None) -> StoredObject:
        return ObjectStore(self.client, self.bucket).existing(ours, identity=self.metadata, crc32=crc32)

    def _check(self, expected_length: int | None, file_format: str | None, channels: int | None) -> None:
        """Raise :class:`MediaInvalid` unless the body is whole and of the declared format."""
        if expected_length is not None and self.size != expected_length:
            raise MediaInvalid(f"received {self.size} bytes, Content-Length said {expected_length}")
        if file_format is not None:
            validate_container(bytes(self._header), self.size, file_format, channels)


class SpooledUpload(_CheckedBody):
    """The body goes to an unlinked temporary file, then, checked, to S3 in one PutObject."""

    def __init__(self, target: MediaTarget, *, directory: str | None) -> None:
        super().__init__(target)
        # Closed by close(), which upload_media always calls.
        self._file = tempfile.TemporaryFile(dir=directory, prefix="archiver-media-")  # noqa: SIM115

    def write(self, chunk: bytes) -> None:
        self._receive(chunk)
        self._file.write(chunk)

    def finish(
        self, *, expected_length: int | None, file_format: str | None, channels: int | None
    ) -> StoredObject:
        """Check the body, then store it with its SHA-256; raise (and store nothing) if anything is off."""
        self._check(expected_length, file_format, channels)
        digest = self._sha256.digest()
        checksum = base64.b64encode(digest).decode("ascii")
        self._file.flush()
        self._file.seek(0)
        ours = StoredObject(self.bucket, self.key, self.size, digest.hex(), f"sha256:{checksum}")
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=self._file,  # type: ignore[arg-type]  # a binary file, as botocore takes
                ContentLength=self.size,
                ContentType=self.content_type,
                Metadata={"sha256": digest.hex(), **self.metadata},
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
                IfNoneMatch="*",  # never over an archived object (objects.py)
                **self.write_args,  # type: ignore[arg-type]
            )
        except ClientError as error:
            if not precondition_failed(error):
                raise
            return self._existing(ours)
        return ours

    def close(self, *, success: bool) -> None:
        self._file.close()  # already unlinked: closing frees the disk


class MultipartUpload(_CheckedBody):
    """The body goes to S3 in parts as it arrives; the upload is completed once it is checked."""

    def __init__(self, target: MediaTarget, *, chunk_bytes: int, max_concurrency: int) -> None:
        super().__init__(target)
        self.chunk_bytes = chunk_bytes
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="s3-part")
        self._slots = threading.BoundedSemaphore(max_concurrency + 1)
        self._buffer = bytearray(chunk_bytes)
        self._fill = 0
        self._crc = 0
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []

    # --- receiving -------------------------------------------------------------------------------

    def write(self, chunk: bytes) -> None:
        self._receive(chunk)
        self._crc = zlib.crc32(chunk, self._crc)
        view = memoryview(chunk)
        while view:
            piece = view[: self.chunk_bytes - self._fill]
            self._buffer[self._fill : self._fill + len(piece)] = piece
            self._fill += len(piece)
            view = view[len(piece) :]
            if self._fill == self.chunk_bytes:
                self._submit_part()

    def _submit_part(self) -> None:
        """Hand the complete part to a worker thread (waiting while too many parts are in flight)."""
        if self._upload_id is None:
            created = self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                ContentType=self.content_type,
                Metadata=self.metadata,
                ChecksumAlgorithm="CRC32",
                ChecksumType="FULL_OBJECT",
                **self.write_args,  # type: ignore[arg-type]
            )
            self._upload_id = created["UploadId"]
        # The full buffer itself goes to the upload (no copy); a fresh one takes its place.
        body = self._buffer if self._fill == self.chunk_bytes else bytes(self._buffer[: self._fill])
        self._slots.acquire()
        self._buffer, self._fill = bytearray(self.chunk_bytes), 0
        future = self._executor.submit(self._upload_part, len(self._parts) + 1, body)
        future.add_done_callback(lambda _f: self._slots.release())
        self._parts.append(future)

    def _upload_part(self, number: int, body: bytes | bytearray) -> dict[str, Any]:
        crc = _b64_crc(zlib.crc32(body))
        response = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id or "",
            PartNumber=number,
            Body=body,  # type: ignore[arg-type]  # botocore sends a bytearray as is
            ChecksumAlgorithm="CRC32",
            ChecksumCRC32=crc,
        )
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32": crc}

    # --- finishing -------------------------------------------------------------------------------

    def finish(
        self, *, expected_length: int | None, file_format: str | None, channels: int | None
    ) -> StoredObject:
        """Check the body, then complete the upload; raise (and store nothing) if anything is off."""
        self._check(expected_length, file_format, channels)
        sha256_hex, crc = self._sha256.hexdigest(), _b64_crc(self._crc)
        metadata = {"sha256": sha256_hex, **self.metadata}
        ours = StoredObject(self.bucket, self.key, self.size, sha256_hex, f"crc32:{crc}")
        try:
            if self._upload_id is None:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=bytes(self._buffer[: self._fill]),
                    ContentType=self.content_type,
                    Metadata=metadata,
                    ChecksumAlgorithm="CRC32",
                    ChecksumCRC32=crc,
                    IfNoneMatch="*",
                    **self.write_args,  # type: ignore[arg-type]
                )
                return ours
            if self._fill:
                self._submit_part()
            parts = [future.result() for future in self._parts]
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                ChecksumCRC32=crc,
                ChecksumType="FULL_OBJECT",
                IfNoneMatch="*",
            )
        except ClientError as error:
            if not precondition_failed(error):
                raise
            self._abort()
            return self._existing(ours, crc32=crc)
        # Metadata is fixed when a multipart upload is created, before the hash is known: the
        # SHA-256 goes on the object as its tag "sha256".
        self.client.put_object_tagging(
            Bucket=self.bucket, Key=self.key, Tagging={"TagSet": [{"Key": "sha256", "Value": sha256_hex}]}
        )
        return ours

    def close(self, *, success: bool) -> None:
        """Release the threads and buffers; abort an unfinished multipart upload."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if not success:
            self._abort()
        self._buffer, self._fill = bytearray(), 0

    def _abort(self) -> None:
        if self._upload_id is None:
            return
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None
        except Exception:
            log.warning(
                "could not abort multipart upload of s3://%s/%s", self.bucket, self.key, exc_info=True
            )


MediaUpload = SpooledUpload | MultipartUpload


def new_media_upload(
    store: ObjectStore,
    key: str,
    *,
    content_type: str,
    metadata: dict[str, str],
    expected_length: int | None,
    settings: Settings,
) -> MediaUpload:
    """Spooled when the declared length allows it (see the module's docstring), in parts otherwise."""
    target = MediaTarget(store.client, store.bucket, key, content_type, metadata, store.write_args)
    if expected_length is not None and expected_length <= settings.media_spool_max_bytes:
        directory = settings.media_spool_dir or tempfile.gettempdir()
        if spool_fits(expected_length, settings.media_spool_max_bytes, shutil.disk_usage(directory).free):
            return SpooledUpload(target, directory=directory)
        log.info(
            "not enough free disk in %s to spool %d bytes: uploading in parts", directory, expected_length
        )
    return MultipartUpload(
        target,
        chunk_bytes=part_size_for(expected_length, settings.s3_multipart_chunk_bytes),
        max_concurrency=settings.s3_max_concurrency,
    )


def upload_media(
    chunks: Iterable[bytes],
    make_upload: Callable[[], MediaUpload],
    *,
    expected_length: int | None,
    file_format: str | None,
    channels: int | None,
) -> StoredObject:
    upload = make_upload()
    success = False
    try:
        for chunk in chunks:
            upload.write(chunk)
        stored = upload.finish(expected_length=expected_length, file_format=file_format, channels=channels)
        success = True
        return stored
    finally:
        upload.close(success=success)
