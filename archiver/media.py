"""Spooling recording media to a temporary file while hashing and checking it.

Memory stays bounded whatever the size: chunks go to disk as they arrive, SHA-256 and CRC32 are
computed on the way, and only the first bytes are kept to check the container's header. A body
that is shorter or longer than its Content-Length, or whose WAV/MP3 structure does not add up, is
rejected: it is never stored as complete. (A byte flipped inside the audio samples cannot be seen
by anyone without a checksum from the provider, which Bandwidth does not publish.)
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HEADER_BYTES = 4096


class MediaInvalid(Exception):
    """The downloaded media is incomplete or malformed; download it again from the start."""


@dataclass
class SpooledMedia:
    path: Path
    size: int
    sha256_hex: str
    crc32: int

    @property
    def crc32_b64(self) -> str:
        return base64.b64encode(self.crc32.to_bytes(4, "big")).decode("ascii")

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def spool(
    chunks: Iterable[bytes],
    *,
    expected_length: int | None,
    file_format: str,
    channels: int | None,
    spool_dir: str | None = None,
) -> SpooledMedia:
    digest = hashlib.sha256()
    crc = 0
    size = 0
    header = bytearray()
    handle = tempfile.NamedTemporaryFile(prefix="archiver-media-", dir=spool_dir, delete=False)  # noqa: SIM115
    path = Path(handle.name)
    try:
        with handle:
            for chunk in chunks:
                handle.write(chunk)
                digest.update(chunk)
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
                if len(header) < HEADER_BYTES:
                    header += chunk[: HEADER_BYTES - len(header)]
            handle.flush()
            os.fsync(handle.fileno())
        if expected_length is not None and size != expected_length:
            raise MediaInvalid(f"received {size} bytes, Content-Length said {expected_length}")
        validate_container(bytes(header), size, file_format, channels)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return SpooledMedia(path, size, digest.hexdigest(), crc)


def validate_container(header: bytes, size: int, file_format: str, channels: int | None) -> None:
    if file_format == "wav":
        _validate_wav(header, size, channels)
    elif file_format == "mp3":
        _validate_mp3(header, size)
    else:
        raise MediaInvalid(f"unknown file format {file_format!r}")


def _validate_wav(header: bytes, size: int, channels: int | None) -> None:
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise MediaInvalid("not a RIFF/WAVE file")
    (riff_size,) = struct.unpack_from("<I", header, 4)
    if riff_size + 8 != size:
        raise MediaInvalid(f"RIFF header announces {riff_size + 8} bytes, received {size}")
    offset, seen_fmt = 12, False
    while offset + 8 <= len(header):
        chunk_id = header[offset : offset + 4]
        (chunk_size,) = struct.unpack_from("<I", header, offset + 4)
        if chunk_id == b"fmt ":
            if offset + 8 + 16 > len(header):
                raise MediaInvalid("truncated fmt chunk")
            (_, wav_channels) = struct.unpack_from("<HH", header, offset + 8)
            if channels is not None and wav_channels != channels:
                raise MediaInvalid(f"WAV has {wav_channels} channel(s), the recording {channels}")
            seen_fmt = True
        elif chunk_id == b"data":
            if not seen_fmt:
                raise MediaInvalid("data chunk before fmt chunk")
            if offset + 8 + chunk_size not in (size, size - 1):  # a pad byte may follow an odd chunk
                raise MediaInvalid(f"data chunk announces {chunk_size} bytes, {size - offset - 8} present")
            return
        offset += 8 + chunk_size + (chunk_size & 1)
    raise MediaInvalid("no data chunk in the WAV header")


def _validate_mp3(header: bytes, size: int) -> None:
    offset = 0
    if header[:3] == b"ID3":
        if len(header) < 10:
            raise MediaInvalid("truncated ID3 tag")
        s = header[6:10]
        offset = 10 + ((s[0] << 21) | (s[1] << 14) | (s[2] << 7) | s[3])
    if offset + 4 > min(len(header), size):
        raise MediaInvalid("no MPEG frame after the ID3 tag")
    if header[offset] != 0xFF or header[offset + 1] & 0xE0 != 0xE0:
        raise MediaInvalid("no MPEG frame sync at the start of the audio")
