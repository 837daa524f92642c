"""Bandwidth real-time transcriptions (``<StartTranscription>``): fetch, store, delete.

The JSON is stored byte for byte as the provider served it, under
``{prefix}/bandwidth/{account}/{yyyy}/{mm}/{dd}/{callId}/{transcriptionId}/realtime-transcription.json``,
and each track's text becomes a transcript segment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from archiver.core.ids import validate
from archiver.pipeline.handlers.base import ArchiveResult, Segment, StoredPart
from archiver.pipeline.retry import PermanentStepError
from archiver.providers.http import DeleteOutcome
from archiver.storage.objects import bandwidth_call_key

if TYPE_CHECKING:
    from archiver.db.models import ArchiveItem
    from archiver.pipeline.context import PipelineContext

FILENAME = "realtime-transcription.json"


def _ids(item: ArchiveItem) -> tuple[str, str, str]:
    return (
        validate("bandwidth_account", item.account_id),
        validate("bandwidth_call", item.call_id),
        validate("bandwidth_transcription", item.provider_id),
    )


def segments_from(data: Any, transcription_id: str) -> list[Segment]:
    """One segment per track of a ``callTranscriptionResponse``."""
    if not isinstance(data, dict) or not isinstance(data.get("tracks"), list):
        raise PermanentStepError("transcription body has no 'tracks' list")
    if data.get("transcriptionId") not in (None, transcription_id):
        raise PermanentStepError(
            f"provider answered for transcription {data.get('transcriptionId')!r}, not {transcription_id!r}"
        )
    segments = []
    for track in data["tracks"]:
        if not isinstance(track, dict):
            raise PermanentStepError("transcription track is not an object")
        confidence = track.get("confidence")
        language = track.get("detectedLanguage")
        segments.append(
            Segment(
                text=str(track.get("transcript") or ""),
                kind="track",
                track=track.get("track") if isinstance(track.get("track"), str) else None,
                language=language if isinstance(language, str) else None,
                confidence=float(confidence) if isinstance(confidence, int | float) else None,
            )
        )
    return segments


class RealtimeTranscriptionHandler:
    def archive(self, ctx: PipelineContext, item: ArchiveItem) -> ArchiveResult:
        account_id, call_id, transcription_id = _ids(item)
        document = ctx.bandwidth_for(account_id).get_realtime_transcription(
            account_id, call_id, transcription_id
        )
        segments = segments_from(document.data, transcription_id)
        day = item.provider_started_at or item.created_at
        store = ctx.store_for("bandwidth", account_id)
        key = bandwidth_call_key(store.prefix, account_id, day, call_id, transcription_id, FILENAME)
        stored = store.put_bytes(
            key,
            document.body,
            content_type="application/json",
            metadata={
                "provider": "bandwidth",
                "account-id": account_id,
                "call-id": call_id,
                "transcription-id": transcription_id,
            },
        )
        store.verify(stored)
        return ArchiveResult(
            parts=[StoredPart("transcription", stored, "application/json")], segments=segments
        )

    def archive_transcription(self, ctx: PipelineContext, item: ArchiveItem) -> ArchiveResult:
        raise PermanentStepError("a real-time transcription has no separate transcription step")

    def delete(self, ctx: PipelineContext, item: ArchiveItem, scope: str) -> DeleteOutcome:
        return ctx.bandwidth_for(item.account_id).delete_realtime_transcription(*_ids(item))

    def exists(self, ctx: PipelineContext, item: ArchiveItem, scope: str) -> bool:
        return ctx.bandwidth_for(item.account_id).realtime_transcription_exists(*_ids(item))

    def required_roles(self, item: ArchiveItem) -> set[str]:
        return {"transcription"}
