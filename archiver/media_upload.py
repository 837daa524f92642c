"""Streaming media into S3: hash the download and upload it in parts while it arrives.

SHA-256 and the full-object CRC32 are computed over the stream as it arrives. Each part
(``chunk_bytes``) is handed to a worker thread as soon as it is complete, which computes its CRC32
and uploads it, so downloading and uploading overlap. A part's bytes are kept until S3 has them
(botocore retries them), and at most ``max_concurrency + 1`` parts exist at once: when they do, the
download waits (TCP backpressure), so memory is bounded whatever the media's size, and no disk is
used. Only when the whole body has arrived and passed its checks (Content-Length, container
structure) is the multipart upload completed, with the full-object CRC32 that S3 verifies;
otherwise it is aborted and nothing is stored.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from archiver.media import HEADER_BYTES, MediaInvalid, validate_container
from archiver.storage import StoredObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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


class MediaUpload:
    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        content_type: str,
        metadata: dict[str, str],
        chunk_bytes: int,
        max_concurrency: int,
    ) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.content_type, self.metadata = content_type, metadata
        self.chunk_bytes = chunk_bytes
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="s3-part")
        self._slots = threading.BoundedSemaphore(max_concurrency + 1)
        self._buffer = bytearray(chunk_bytes)
        self._fill = 0
        self._sha256 = hashlib.sha256()
        self._crc = 0
        self.size = 0
        self._header = bytearray()
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []

    # --- receiving -------------------------------------------------------------------------------

    def write(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        self._crc = zlib.crc32(chunk, self._crc)
        if len(self._header) < HEADER_BYTES:
            self._header += chunk[: HEADER_BYTES - len(self._header)]
        self.size += len(chunk)
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
        if expected_length is not None and self.size != expected_length:
            raise MediaInvalid(f"received {self.size} bytes, Content-Length said {expected_length}")
        if file_format is not None:
            validate_container(bytes(self._header), self.size, file_format, channels)
        sha256_hex, crc = self._sha256.hexdigest(), _b64_crc(self._crc)
        metadata = {"sha256": sha256_hex, **self.metadata}
        if self._upload_id is None:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self._buffer[: self._fill]),
                ContentType=self.content_type,
                Metadata=metadata,
                ChecksumAlgorithm="CRC32",
                ChecksumCRC32=crc,
            )
        else:
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
            )
            # Metadata is fixed when a multipart upload is created, before the hash is known: the
            # SHA-256 goes on the object as its tag "sha256".
            self.client.put_object_tagging(
                Bucket=self.bucket, Key=self.key, Tagging={"TagSet": [{"Key": "sha256", "Value": sha256_hex}]}
            )
        return StoredObject(self.bucket, self.key, self.size, sha256_hex, f"crc32:{crc}")

    def close(self, *, success: bool) -> None:
        """Release the threads and buffers; abort an unfinished multipart upload."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if not success and self._upload_id is not None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            except Exception:
                log.warning(
                    "could not abort multipart upload of s3://%s/%s", self.bucket, self.key, exc_info=True
                )
        self._buffer, self._fill = bytearray(), 0


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
