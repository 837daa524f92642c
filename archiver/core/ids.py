"""Validation of provider ids before they form a URL path or an S3 key.

Ids arrive in untrusted webhook bodies. Only a conservative character set is accepted: no '/', '.',
'%', '?' or whitespace can reach a path, so an id can never escape its URL segment or S3 prefix.
"""

from __future__ import annotations

import re


class InvalidId(ValueError):
    """An id that does not have the provider's shape."""


_PATTERNS: dict[str, re.Pattern[str]] = {
    # Bandwidth account ids are numeric ("9900000").
    "bandwidth_account": re.compile(r"^[0-9]{1,20}$"),
    # c-15ac29a2-1331029c-2cb0-4a07-b215-b22865662d85
    "bandwidth_call": re.compile(r"^c-[0-9a-zA-Z][0-9a-zA-Z-]{0,98}$"),
    # t-3f758f24-...; rejected duplicates carry an s- id.
    "bandwidth_transcription": re.compile(r"^[ts]-[0-9a-zA-Z][0-9a-zA-Z-]{0,98}$"),
    "bandwidth_recording": re.compile(r"^r-[0-9a-zA-Z][0-9a-zA-Z-]{0,98}$"),
    # Twilio SIDs: two letters and 32 hex digits.
    "twilio_account": re.compile(r"^AC[0-9a-fA-F]{32}$"),
    "twilio_service": re.compile(r"^GA[0-9a-fA-F]{32}$"),
    "twilio_transcript": re.compile(r"^GT[0-9a-fA-F]{32}$"),
    "twilio_recording": re.compile(r"^RE[0-9a-fA-F]{32}$"),
}


def validate(kind: str, value: object) -> str:
    """Return ``value`` if it is a well-formed id of ``kind``; raise :class:`InvalidId` otherwise."""
    pattern = _PATTERNS[kind]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 40 else f"{str(value)[:40]}…"
        raise InvalidId(f"invalid {kind.replace('_', ' ')} id: {shown!r}")
    return value
