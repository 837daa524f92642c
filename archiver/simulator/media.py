"""Deterministic, streamable recording media: real WAV (RIFF, PCM) and MP3 (MPEG-1 Layer III) bytes.

Nothing is built in memory: a 2 GiB recording is a header plus a precomputed block repeated, yielded
in chunks. The same seed, duration, channels and format always give the same bytes.

* WAV: 8 kHz, 16-bit PCM per channel (128 kbit/s a channel, about 1 MB a minute; a four-hour
  two-channel recording is about 460 MB). The samples are a tone whose pitch comes from the seed.
* MP3: an ID3v2 tag naming the seed, then 32 kHz 128 kbit/s frames of exactly 576 bytes (36 ms each),
  valid frame headers with zeroed side information (decodes as silence).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from functools import lru_cache

WAV_RATE = 8000
WAV_SAMPLE_BYTES = 2
MP3_FRAME_BYTES = 576
MP3_FRAME_SECONDS = 1152 / 32000
CHUNK = 256 * 1024
CONTENT_TYPES = {"wav": "audio/vnd.wave", "mp3": "audio/mpeg"}


def wav_data_bytes(duration: float, channels: int) -> int:
    return round(duration * WAV_RATE) * WAV_SAMPLE_BYTES * channels


def wav_header(duration: float, channels: int) -> bytes:
    data = wav_data_bytes(duration, channels)
    block_align = WAV_SAMPLE_BYTES * channels
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, WAV_RATE, WAV_RATE * block_align, block_align, 16)
        + b"data"
        + struct.pack("<I", data)
    )


def id3_tag(seed: int) -> bytes:
    text = f"\x03simulator seed {seed}".encode()
    frame = b"TXXX" + struct.pack(">I", len(text)) + b"\x00\x00" + text
    size = len(frame)
    synchsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x04\x00\x00" + synchsafe + frame


def mp3_frames(duration: float) -> int:
    return max(1, math.ceil(duration / MP3_FRAME_SECONDS))


def mp3_frame(channels: int) -> bytes:
    # 0xFFFB: sync, MPEG-1, Layer III, no CRC. 0x98: 128 kbit/s, 32 kHz, no padding.
    # Channel mode: 0x00 stereo, 0xC0 mono.
    header = bytes([0xFF, 0xFB, 0x98, 0xC0 if channels == 1 else 0x00])
    return header + bytes(MP3_FRAME_BYTES - 4)


def media_size(duration: float, channels: int, file_format: str, seed: int) -> int:
    if file_format == "wav":
        return 44 + wav_data_bytes(duration, channels)
    return len(id3_tag(seed)) + mp3_frames(duration) * MP3_FRAME_BYTES


@lru_cache(maxsize=64)
def _wav_block(seed: int, channels: int) -> bytes:
    """One second of samples (a whole number of periods, so repeating it is seamless)."""
    frequency = 200 + seed % 600
    samples = []
    for n in range(WAV_RATE):
        value = int(8000 * math.sin(2 * math.pi * frequency * n / WAV_RATE))
        samples.extend([value] * channels)
    return struct.pack(f"<{len(samples)}h", *samples)


def iter_media(
    duration: float, channels: int, file_format: str, seed: int, chunk: int = CHUNK
) -> Iterator[bytes]:
    """The media's bytes in chunks of about ``chunk`` bytes."""
    if file_format == "wav":
        yield wav_header(duration, channels)
        second = _wav_block(seed, channels)
        block = second * max(1, chunk // len(second))
        remaining = wav_data_bytes(duration, channels)
    else:
        yield id3_tag(seed)
        frame = mp3_frame(channels)
        block = frame * max(1, chunk // MP3_FRAME_BYTES)
        remaining = mp3_frames(duration) * MP3_FRAME_BYTES
    view = memoryview(block)
    while remaining > 0:
        offset = 0
        while offset < len(block) and remaining > 0:
            size = min(chunk, len(block) - offset, remaining)
            yield bytes(view[offset : offset + size])
            offset += size
            remaining -= size
