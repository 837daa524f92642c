"""Storing and verifying objects against the S3 server process."""

from __future__ import annotations

import uuid

import pytest

from archiver.storage import StoredObject, VerificationFailed, bandwidth_call_key


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
