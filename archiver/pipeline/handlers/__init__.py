"""One handler per kind of artifact, listed here: how it is archived, deleted and confirmed purged.

The generic steps (:mod:`archiver.pipeline.steps`) look a kind's handler up in :data:`HANDLERS`;
the types they exchange are in :mod:`archiver.pipeline.handlers.base`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from archiver.db.models import ArtifactKind
from archiver.pipeline.handlers.base import ArtifactHandler
from archiver.pipeline.handlers.realtime_transcriptions import RealtimeTranscriptionHandler
from archiver.pipeline.handlers.recordings import RecordingHandler
from archiver.pipeline.handlers.twilio_transcripts import TwilioTranscriptHandler

__all__ = ["HANDLERS", "ArtifactHandler", "handler_for"]

#: Every kind of artifact and its handler.
HANDLERS: Mapping[str, ArtifactHandler] = MappingProxyType(
    {
        ArtifactKind.REALTIME_TRANSCRIPTION: RealtimeTranscriptionHandler(),
        ArtifactKind.RECORDING: RecordingHandler(),
        ArtifactKind.TRANSCRIPT: TwilioTranscriptHandler(),
    }
)


def handler_for(kind: str) -> ArtifactHandler:
    try:
        return HANDLERS[kind]
    except KeyError:
        raise LookupError(f"no handler for artifact kind {kind!r}") from None
