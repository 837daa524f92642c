"""Storing and verifying objects against the S3 server process."""

from __future__ import annotations

import uuid

import pytest

from archiver.storage.objects import StoredObject, VerificationFailed, bandwidth_call_key


@pytest.fixture
def store(stack):
    return stack.object_store()


def test_put_then_verify(store):
    key = f"tests/{uuid.uuid4().hex}.json"
    stored = store.put_bytes(
        key, b'{"hello": "world"}', content_type="application/json", metadata={"call-id": "c-1"}
    )
    store.verify(stored)
    head = store.client.head_object(Bucket=store.bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"sha256": stored.sha256_hex, "call-id": "c-1"}


READ_BACK = pytest.mark.parametrize("read_back", [True, False], ids=["read-back", "head-only"])


@READ_BACK
def test_an_object_changed_behind_our_back_fails_verification(store, read_back):
    key = f"tests/{uuid.uuid4().hex}.json"
    stored = store.put_bytes(key, b'{"a": 1}', content_type="application/json")
    store.client.put_object(Bucket=store.bucket, Key=key, Body=b'{"a": 2}')  # same length, other bytes
    with pytest.raises(VerificationFailed):
        store.verify(stored, read_back=read_back)


def test_head_only_check_wants_the_recorded_sha256(store):
    """An object rewritten with the same S3 checksum but without our SHA-256 is not ours."""
    key = f"tests/{uuid.uuid4().hex}.json"
    stored = store.put_bytes(key, b'{"a": 1}', content_type="application/json")
    _algorithm, _, checksum = stored.s3_checksum.partition(":")
    store.client.put_object(
        Bucket=store.bucket, Key=key, Body=b'{"a": 1}', ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum
    )
    store.verify(stored)  # read back: the bytes are the same
    with pytest.raises(VerificationFailed, match="no sha256"):
        store.verify(stored, read_back=False)


@READ_BACK
def test_a_missing_or_shorter_object_fails_verification(store, read_back):
    key = f"tests/{uuid.uuid4().hex}.json"
    stored = store.put_bytes(key, b"0123456789", content_type="application/json")
    store.verify(stored, read_back=read_back)
    longer = StoredObject(stored.bucket, stored.key, stored.size + 1, stored.sha256_hex, stored.s3_checksum)
    with pytest.raises(VerificationFailed, match="length"):
        store.verify(longer, read_back=read_back)
    wrong_sum = StoredObject(stored.bucket, stored.key, stored.size, stored.sha256_hex, "sha256:AAAA")
    with pytest.raises(VerificationFailed, match="checksum"):
        store.verify(wrong_sum, read_back=read_back)
    other_hash = StoredObject(stored.bucket, stored.key, stored.size, "0" * 64, stored.s3_checksum)
    with pytest.raises(VerificationFailed, match="sha256"):
        store.verify(other_hash, read_back=read_back)
    missing = StoredObject(
        stored.bucket, stored.key + ".gone", stored.size, stored.sha256_hex, stored.s3_checksum
    )
    with pytest.raises(Exception):  # noqa: B017 - botocore's 404 ClientError
        store.verify(missing, read_back=read_back)


def test_keys_are_deterministic_and_prefixed():
    from datetime import UTC, datetime

    day = datetime(2026, 3, 7, 23, 59, tzinfo=UTC)
    assert bandwidth_call_key("archive/v1", "9900000", day, "c-1", "t-2", "x.json") == (
        "archive/v1/bandwidth/9900000/2026/03/07/c-1/t-2/x.json"
    )
    assert (
        bandwidth_call_key("", "9900000", day, "c-1", "t-2", "x.json")
        == "bandwidth/9900000/2026/03/07/c-1/t-2/x.json"
    )


# --- media uploads: spooled (one PutObject with the SHA-256) and in parts (full-object CRC32) ------


def wav_body(seconds: float = 2.0, channels: int = 1) -> bytes:
    from archiver.simulator.media import iter_media

    return b"".join(iter_media(seconds, channels, "wav", 7))


def media_settings(tmp_path, **overrides):
    from archiver.core.config import Settings

    values = {"database_url": "sqlite://", "media_spool_dir": str(tmp_path), **overrides}
    return Settings(_env_file=None, **values)


def upload(store, body, settings, *, expected_length, key=None, pieces=64 * 1024):
    from archiver.storage.media_upload import new_media_upload, upload_media

    key = key or f"tests/{uuid.uuid4().hex}.wav"
    chunks = (body[i : i + pieces] for i in range(0, len(body), pieces))

    def make():
        return new_media_upload(
            store, key, content_type="audio/vnd.wave", metadata={"call-id": "c-1"},
            expected_length=expected_length, settings=settings,
        )  # fmt: skip

    return key, upload_media(chunks, make, expected_length=expected_length, file_format="wav", channels=1)


def test_the_choice_between_spooling_and_parts():
    from archiver.storage.media_upload import SPOOL_FREE_RESERVE_BYTES, spool_fits

    gib = 2**30
    assert spool_fits(100, 5 * gib, 10 * gib)
    assert not spool_fits(None, 5 * gib, 10 * gib)  # unknown length: parts
    assert not spool_fits(5 * gib + 1, 5 * gib, 100 * gib)  # over the limit: parts
    assert not spool_fits(1, 0, 100 * gib)  # spooling turned off
    assert spool_fits(gib, 5 * gib, gib + SPOOL_FREE_RESERVE_BYTES)
    assert not spool_fits(gib, 5 * gib, gib + SPOOL_FREE_RESERVE_BYTES - 1)  # the disk would be too full


def test_spooled_media_is_stored_with_its_sha256_and_leaves_no_file(store, tmp_path, monkeypatch):
    import base64
    import hashlib

    from archiver.storage.media_upload import SpooledUpload, new_media_upload

    body = wav_body(seconds=300.0)  # 4.6 MB: several pieces, above nothing in particular
    settings = media_settings(tmp_path)
    assert isinstance(
        new_media_upload(store, "k", content_type="x", metadata={}, expected_length=len(body),
                         settings=settings), SpooledUpload)  # fmt: skip
    seen_during: list[list[str]] = []
    original_write = SpooledUpload.write

    def write(self, chunk):  # the spool is unlinked from the start: a killed worker leaves nothing
        seen_during.append(list(tmp_path.iterdir()))
        original_write(self, chunk)

    monkeypatch.setattr(SpooledUpload, "write", write)  # a spy: the real write still runs
    key, stored = upload(store, body, settings, expected_length=len(body))
    digest = hashlib.sha256(body).digest()
    assert stored.sha256_hex == digest.hex() and stored.size == len(body)
    assert stored.s3_checksum == "sha256:" + base64.b64encode(digest).decode()
    store.verify(stored, read_back=False)
    head = store.client.head_object(Bucket=store.bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(digest).decode()
    assert head["Metadata"] == {"sha256": digest.hex(), "call-id": "c-1"}
    assert store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read() == body
    assert seen_during and all(listing == [] for listing in seen_during)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spool", [True, False], ids=["spooled", "parts"])
def test_media_shorter_than_declared_is_not_stored(store, tmp_path, spool):
    from archiver.storage.media_checks import MediaInvalid

    body = wav_body(seconds=400.0)  # 6.4 MB: more than one 5 MiB part
    settings = media_settings(tmp_path, media_spool_max_bytes=2**30 if spool else 0)
    key = f"tests/{uuid.uuid4().hex}.wav"
    with pytest.raises(MediaInvalid, match="Content-Length"):
        upload(store, body[:-1000], settings, expected_length=len(body), key=key)
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=key).get("Contents", [])
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=key).get("Uploads", [])
    assert listed == [] and uploads == []  # no object, and no multipart upload left behind
    assert list(tmp_path.iterdir()) == []


def test_media_over_the_spool_limit_or_of_unknown_length_goes_in_parts(store, tmp_path):
    import base64
    import zlib

    from archiver.storage.media_upload import MultipartUpload, new_media_upload

    body = wav_body(seconds=400.0)
    settings = media_settings(tmp_path, media_spool_max_bytes=len(body) - 1)
    for expected in (len(body), None):
        made = new_media_upload(store, "k", content_type="x", metadata={},
                                expected_length=expected, settings=settings)  # fmt: skip
        assert isinstance(made, MultipartUpload)
        made.close(success=False)
    key, stored = upload(store, body, settings, expected_length=len(body))
    assert stored.s3_checksum == "crc32:" + base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    store.verify(stored, read_back=False)  # the SHA-256 is the object's tag
    assert store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read() == body


# --- the archive cannot be overwritten ------------------------------------------------------------


def body_at(store, key):
    return store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()


def test_a_write_over_our_own_object_is_accepted_as_already_archived(store):
    key = f"tests/{uuid.uuid4().hex}.json"
    first = store.put_bytes(key, b'{"a": 1}', content_type="application/json", metadata={"call-id": "c-1"})
    again = store.put_bytes(key, b'{"a": 1}', content_type="application/json", metadata={"call-id": "c-1"})
    assert again == first
    store.verify(again)


def test_a_write_over_another_object_is_an_integrity_alarm_and_overwrites_nothing(store, caplog):
    from archiver.storage.objects import IntegrityAlarm

    key = f"tests/{uuid.uuid4().hex}.json"
    store.client.put_object(Bucket=store.bucket, Key=key, Body=b"someone else's")
    with pytest.raises(IntegrityAlarm, match="not overwritten"):
        store.put_bytes(key, b'{"a": 1}', content_type="application/json", metadata={"call-id": "c-1"})
    assert body_at(store, key) == b"someone else's"
    assert "INTEGRITY ALARM" in caplog.text


def test_a_changed_document_keeps_our_earlier_copy_only_when_declared_mutable(store):
    from archiver.storage.objects import IntegrityAlarm

    key = f"tests/{uuid.uuid4().hex}.json"
    identity = {"call-id": "c-1", "recording-id": "r-1"}
    first = store.put_bytes(
        key, b'{"status": "processing"}', content_type="application/json", metadata=identity
    )
    with pytest.raises(IntegrityAlarm):
        store.put_bytes(key, b'{"status": "complete"}', content_type="application/json", metadata=identity)
    kept = store.put_bytes(
        key, b'{"status": "complete"}', content_type="application/json", metadata=identity, mutable=True
    )
    assert (kept.size, kept.sha256_hex, kept.s3_checksum) == (first.size, first.sha256_hex, first.s3_checksum)
    store.verify(kept)
    with pytest.raises(IntegrityAlarm):  # another artifact's document is never taken for ours
        store.put_bytes(
            key, b"{}", content_type="application/json", metadata={"call-id": "c-2"}, mutable=True
        )
    assert body_at(store, key) == b'{"status": "processing"}'


@pytest.mark.parametrize("spool", [True, False], ids=["spooled", "in-parts"])
def test_media_over_an_object_is_kept_if_ours_and_an_alarm_otherwise(store, tmp_path, spool):
    from archiver.storage.media_upload import MediaTarget, MultipartUpload, SpooledUpload, upload_media
    from archiver.storage.objects import IntegrityAlarm

    key = f"tests/{uuid.uuid4().hex}.bin"
    body = bytes(range(256)) * 50_000  # 12.8 MB: three parts

    def make():
        target = MediaTarget(store.client, store.bucket, key, "application/octet-stream", {"call-id": "c-1"})
        if spool:
            return SpooledUpload(target, directory=str(tmp_path))
        return MultipartUpload(target, chunk_bytes=5 * 1024 * 1024, max_concurrency=2)

    chunks = [body[i : i + 1024 * 1024] for i in range(0, len(body), 1024 * 1024)]
    first = upload_media(chunks, make, expected_length=len(body), file_format=None, channels=None)
    again = upload_media(chunks, make, expected_length=len(body), file_format=None, channels=None)
    assert again == first
    store.verify(again, read_back=False)
    other = bytes(reversed(body))
    with pytest.raises(IntegrityAlarm):
        upload_media(
            [other[i : i + 1024 * 1024] for i in range(0, len(other), 1024 * 1024)],
            make,
            expected_length=len(other),
            file_format=None,
            channels=None,
        )
    store.verify(first, read_back=False)  # untouched
    assert store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=key).get("Uploads", []) == []
