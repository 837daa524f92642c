"""S3 storage of archived artifacts, and the proof that what is stored is what we fetched.

Every object is written with a SHA-256 checksum the server can check, then read back: ``HeadObject``
with ``ChecksumMode=ENABLED`` must report our length and checksum, and small objects are also read
in full and re-hashed (S3-compatible test servers such as moto echo checksums without verifying).
Only a verified object may lead to a deletion at the provider.

Nothing in the archive is ever overwritten: every write is conditional (``If-None-Match: *``). When
the key is taken, the object there is accepted only if it is ours: the same length and SHA-256 (a
retry of a write whose answer was lost), or, for a document the provider may answer differently
from one fetch to the next (``mutable``: a recording's metadata), an earlier copy we wrote of the
same artifact, whole. Anything else is an :class:`IntegrityAlarm`: nothing is overwritten, the item
is dead-lettered for an operator, nothing is deleted at the provider.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    FlexibleChecksumError,
    NoCredentialsError,
    PartialCredentialsError,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

#: Objects up to this size are read back in full and re-hashed during verification.
FULL_READBACK_MAX_BYTES = 8 * 1024 * 1024


class VerificationFailed(Exception):
    """The stored object does not match what was hashed; it must not be trusted."""


class IntegrityAlarm(Exception):
    """The key already holds an object that is not ours: it was not overwritten."""


#: What S3, STS and KMS answer when the account cannot reach its bucket at all: the account's
#: problem (its role, its bucket, its key), not the item's (invariant 6).
ACCOUNT_STORAGE_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidToken",
        "NoSuchBucket",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "KMS.AccessDeniedException",
        "KMS.DisabledException",
        "KMS.KMSInvalidStateException",
        "KMS.NotFoundException",
        "403",
    }
)


def storage_refused(error: BaseException) -> str | None:
    """Why the account's storage refuses us, or ``None`` if ``error`` is not such a refusal."""
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return f"no storage credentials: {error}"
    if not isinstance(error, ClientError):
        return None
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ACCOUNT_STORAGE_CODES or (status == 403 and code not in ("PreconditionFailed", "412")):
        return f"{code or status}: {details.get('Message') or error}"
    return None


def kms_matches(head: Any, key: str) -> bool:
    """The object is SSE-KMS encrypted with ``key``. S3 reports the key's ARN: a key given by id or
    ARN is compared by its id; one given by alias can only be checked as SSE-KMS (S3 never reports
    the alias)."""
    if head.get("ServerSideEncryption") != "aws:kms":
        return False
    if key.startswith("alias/") or ":alias/" in key:
        return True
    reported = str(head.get("SSEKMSKeyId", ""))
    return reported.rsplit("/", 1)[-1] == key.rsplit("/", 1)[-1]


def precondition_failed(error: ClientError) -> bool:
    """A conditional write refused: the key already holds an object."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "412") or status == 412


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    sha256_hex: str
    s3_checksum: str  # "sha256:<base64>" or "crc32:<base64>" (full object), as S3 reports it


def object_key(prefix: str, *segments: str) -> str:
    """Join validated segments under the configured prefix."""
    parts = [prefix] if prefix else []
    parts.extend(segments)
    return "/".join(parts)


def bandwidth_call_key(
    prefix: str, account_id: str, day: datetime, call_id: str, artifact_id: str, filename: str
) -> str:
    """``{prefix}/bandwidth/{account}/{yyyy}/{mm}/{dd}/{callId}/{artifactId}/{filename}`` (ids validated
    by the caller)."""
    return object_key(
        prefix,
        "bandwidth",
        account_id,
        f"{day.year:04d}",
        f"{day.month:02d}",
        f"{day.day:02d}",
        call_id,
        artifact_id,
        filename,
    )


def make_s3_client(
    *,
    region: str,
    endpoint_url: str | None,
    credentials: tuple[str, str] | None = None,
    session: boto3.Session | None = None,
) -> S3Client:
    """An S3 client; credentials come from ``session`` (an assumed role), else from boto3's usual
    chain unless given (local stacks)."""
    config = Config(
        region_name=region,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        # We supply our own checksums; some S3-compatible servers reject boto3's default CRC trailers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # Every upload carries its checksum in a signed header, which the server checks against the
        # body: hashing the body once more for the signature (botocore does it over plain http only)
        # would add a pass over every spooled file before its PUT could start.
        s3={"payload_signing_enabled": False},
    )
    access_key, secret_key = credentials if credentials else (None, None)
    make = session.client if session is not None else boto3.client
    client: S3Client = make(  # type: ignore[call-overload]
        "s3",
        endpoint_url=endpoint_url,
        config=config,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
    )
    return client


class ObjectStore:
    """One account's archive: a bucket, the prefix its keys go under, and, when configured, the KMS
    key every object is encrypted with (checked again when the object is verified)."""

    def __init__(
        self, client: S3Client, bucket: str, *, prefix: str = "", kms_key_id: str | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.kms_key_id = kms_key_id

    @property
    def write_args(self) -> dict[str, str]:
        """What every write adds: SSE-KMS with the account's key, when it has one."""
        if self.kms_key_id is None:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}

    def put_bytes(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
        mutable: bool = False,
    ) -> StoredObject:
        """Store ``body`` at ``key`` unless the key is taken (see the module's docstring);
        ``mutable``: a document whose earlier copy of ours may stand for it."""
        digest = hashlib.sha256(body).digest()
        checksum_b64 = base64.b64encode(digest).decode("ascii")
        meta = {"sha256": digest.hex(), **(metadata or {})}
        ours = StoredObject(self.bucket, key, len(body), digest.hex(), f"sha256:{checksum_b64}")
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum_b64,
                Metadata=meta,
                IfNoneMatch="*",
                **self.write_args,  # type: ignore[arg-type]
            )
        except ClientError as error:
            if not precondition_failed(error):
                raise
            return self.existing(ours, identity=metadata or {}, mutable=mutable)
        return ours

    def existing(
        self, ours: StoredObject, *, identity: dict[str, str], mutable: bool = False, crc32: str | None = None
    ) -> StoredObject:
        """What to make of the object already at ``ours.key`` (a conditional write was refused).

        Ours, whole (its length and recorded SHA-256; a multipart object whose tag was never
        written, its full-object CRC32 ``crc32``): accepted, as a write whose answer was lost. With
        ``mutable``, an earlier copy of the same artifact (its ``identity`` metadata), intact:
        accepted in its place. Anything else: :class:`IntegrityAlarm`."""
        location = f"s3://{ours.bucket}/{ours.key}"
        head: Any = self.client.head_object(Bucket=ours.bucket, Key=ours.key, ChecksumMode="ENABLED")
        recorded = head.get("Metadata", {}).get("sha256") or self._tag(ours.key, "sha256")
        size = head.get("ContentLength")
        if size == ours.size and recorded == ours.sha256_hex:
            log.info("%s: already holds this very object (an earlier try): kept", location)
            return ours
        if (
            size == ours.size
            and recorded is None
            and crc32 is not None
            and head.get("ChecksumCRC32") == crc32
        ):
            # A multipart upload of ours completed, then its worker died before tagging it.
            self.client.put_object_tagging(
                Bucket=ours.bucket,
                Key=ours.key,
                Tagging={"TagSet": [{"Key": "sha256", "Value": ours.sha256_hex}]},
            )
            return ours
        if mutable and recorded and self._earlier_copy(ours, head, recorded, identity):
            log.warning(
                "%s: an earlier copy of this document is archived; it is kept, not replaced", location
            )
            checksum = head.get("ChecksumSHA256")
            return StoredObject(ours.bucket, ours.key, int(size), recorded, f"sha256:{checksum}")
        log.error(
            "INTEGRITY ALARM %s already holds another object (%s bytes, sha256 %s; ours: %d bytes, %s): "
            "not overwritten, the item is dead-lettered, nothing is deleted at the provider",
            location,
            size,
            recorded,
            ours.size,
            ours.sha256_hex,
        )
        raise IntegrityAlarm(f"{location} already holds another object; it was not overwritten")

    def _tag(self, key: str, name: str) -> str | None:
        tags = self.client.get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"]
        return next((t["Value"] for t in tags if t["Key"] == name), None)

    def _earlier_copy(self, ours: StoredObject, head: Any, recorded: str, identity: dict[str, str]) -> bool:
        """The object names the same artifact, and its content is the content it records."""
        metadata = head.get("Metadata", {})
        if not identity or any(metadata.get(k) != v for k, v in identity.items()):
            return False
        if head.get("ContentLength", 0) > FULL_READBACK_MAX_BYTES:
            return False
        body = self.client.get_object(Bucket=ours.bucket, Key=ours.key)["Body"].read()
        return hashlib.sha256(body).hexdigest() == recorded

    def verify(self, stored: StoredObject, *, read_back: bool = True) -> None:
        """Raise :class:`VerificationFailed` unless S3 holds exactly ``stored``.

        With ``read_back`` (the archive step), objects up to ``FULL_READBACK_MAX_BYTES`` are read
        and hashed again. Without it (the check just before a provider deletion, after the archive
        step's read-back has been committed), HeadObject's length, S3's own checksum and the
        recorded SHA-256 prove the object is still there, unchanged, without paying for a second
        download of every archived byte."""
        location = f"s3://{stored.bucket}/{stored.key}"
        read_body = read_back and stored.size <= FULL_READBACK_MAX_BYTES
        # One GetObject answers everything HeadObject would (length, checksum, metadata) as well.
        head: Any = (
            self.client.get_object(Bucket=stored.bucket, Key=stored.key, ChecksumMode="ENABLED")
            if read_body
            else self.client.head_object(Bucket=stored.bucket, Key=stored.key, ChecksumMode="ENABLED")
        )
        try:
            length = head.get("ContentLength")
            if length != stored.size:
                raise VerificationFailed(f"{location}: length {length} != {stored.size}")
            algorithm, _, expected = stored.s3_checksum.partition(":")
            reported = head.get({"sha256": "ChecksumSHA256", "crc32": "ChecksumCRC32"}.get(algorithm, "?"))
            if reported != expected:
                raise VerificationFailed(f"{location}: checksum {reported!r} != {expected!r}")
            recorded = head.get("Metadata", {}).get("sha256")
            if recorded is None and not read_body:
                # Multipart media carries its SHA-256 as the tag "sha256" (metadata is fixed too early).
                tags = self.client.get_object_tagging(Bucket=stored.bucket, Key=stored.key)["TagSet"]
                recorded = next((t["Value"] for t in tags if t["Key"] == "sha256"), None)
                if recorded is None:
                    raise VerificationFailed(f"{location}: no sha256 metadata or tag")
            if recorded not in (None, stored.sha256_hex):
                raise VerificationFailed(f"{location}: recorded sha256 differs")
            if self.kms_key_id is not None and not kms_matches(head, self.kms_key_id):
                raise VerificationFailed(f"{location}: not encrypted with the account's KMS key")
            if read_body:
                try:
                    body = head["Body"].read()  # bounded: the length was checked first
                except FlexibleChecksumError as error:
                    raise VerificationFailed(f"{location}: content read back differs ({error})") from None
                if len(body) != stored.size or hashlib.sha256(body).hexdigest() != stored.sha256_hex:
                    raise VerificationFailed(f"{location}: content read back differs")
        finally:
            if read_body:
                head["Body"].close()

    def check_writable(self) -> str:
        """Prove the bucket takes a write under the prefix (with the account's KMS key, if any): a
        small probe object, written, read back, then deleted. Returns its key; raises the S3 error."""
        key = object_key(self.prefix, ".archiver-check", uuid4().hex)
        body = b"archiver write check\n"
        stored = self.put_bytes(key, body, content_type="text/plain")
        self.verify(stored)
        self.client.delete_object(Bucket=self.bucket, Key=key)
        return key

    def object_lock(self) -> str | None:
        """The bucket's default Object Lock retention ("COMPLIANCE 365 days"), ``"enabled"`` without
        a default, or ``None`` when Object Lock is not enabled."""
        try:
            config = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except ClientError as error:
            if "ObjectLockConfigurationNotFound" in str(error.response.get("Error", {}).get("Code", "")):
                return None
            raise
        if config.get("ObjectLockEnabled") != "Enabled":
            return None
        default = config.get("Rule", {}).get("DefaultRetention", {})
        if not default:
            return "enabled"
        length = f"{default['Days']} days" if "Days" in default else f"{default.get('Years')} years"
        return f"{default.get('Mode')} {length}"

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (for the demo and tests; production buckets are
        provisioned with their policies)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self.client.exceptions.ClientError:
            self.client.create_bucket(Bucket=self.bucket)
