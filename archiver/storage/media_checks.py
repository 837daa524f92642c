"""Checking downloaded recording media before it may be stored as complete.

A body shorter or longer than its Content-Length, or whose WAV/MP3 structure does not add up (a
RIFF header announcing more data than arrived, a channel count other than the recording's, no MPEG
frame sync), is rejected. (A byte flipped inside the audio samples cannot be seen by anyone without
a checksum from the provider, which Bandwidth does not publish.) Streaming is in ``media_upload``.
"""

from __future__ import annotations

import struct

HEADER_BYTES = 4096


class MediaInvalid(Exception):
    """The downloaded media is incomplete or malformed; download it again from the start."""


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
