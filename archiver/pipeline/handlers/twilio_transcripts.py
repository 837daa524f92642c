"""Twilio Conversational Intelligence transcripts: the transcript, all its sentences, its operator
results and its media archived and verified, then the transcript deleted.

Under ``{prefix}/twilio/{AccountSid}/{yyyy}/{mm}/{dd}/{TranscriptSid}/``: ``transcript.json`` (the
resource as served), ``sentences.jsonl`` (every sentence once, in order, one JSON object a line,
streamed to S3 page by page), ``operator-results.json`` and ``media.wav|mp3`` (when Twilio stores
the media; downloaded only from the configured media hosts, without credentials).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from archiver.core.ids import validate
from archiver.core.timestamps import parse_timestamp
from archiver.pipeline.handlers.base import (
    ArchiveResult,
    NothingToArchive,
    NotReady,
    Segment,
    StoredPart,
)
from archiver.pipeline.retry import PermanentStepError
from archiver.providers.http import DeleteOutcome
from archiver.storage.media_upload import MediaUpload, new_media_upload, upload_media
from archiver.storage.objects import ObjectStore, object_key

if TYPE_CHECKING:
    from archiver.db.models import ArchiveItem
    from archiver.pipeline.context import PipelineContext

log = logging.getLogger(__name__)

PENDING = {"queued", "in-progress", "new"}
FAILED = {"failed", "canceled", "error"}
MEDIA_TYPES = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/vnd.wave": "wav", "audio/mpeg": "mp3"}


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class TwilioTranscriptHandler:
    def archive(self, ctx: PipelineContext, item: ArchiveItem) -> ArchiveResult:
        sid = validate("twilio_transcript", item.provider_id)
        account = validate("twilio_account", item.account_id)
        client, s = ctx.twilio_for(item.account_id), ctx.settings
        store = ctx.store_for("twilio", item.account_id)
        document = client.get_transcript(sid)
        data = document.data if isinstance(document.data, dict) else {}
        status = str(data.get("status") or "").lower()
        if status in FAILED:
            raise NothingToArchive(f"transcript status {status!r}: nothing to archive")
        if status != "completed":
            waited = ctx.clock.now() - item.created_at
            if waited > timedelta(seconds=s.twilio_max_wait_seconds):
                raise PermanentStepError(f"transcript still {status or 'pending'} after {waited}")
            raise NotReady(f"transcript {status or 'pending'}", s.twilio_poll_seconds)
        day = parse_timestamp(data.get("date_created")) or item.created_at

        def key(filename: str) -> str:
            return object_key(
                store.prefix,
                "twilio",
                account,
                f"{day.year:04d}",
                f"{day.month:02d}",
                f"{day.day:02d}",
                sid,
                filename,
            )

        tags = {"provider": "twilio", "account-sid": account, "transcript-sid": sid}
        parts = []
        stored = store.put_bytes(
            key("transcript.json"),
            document.body,
            content_type="application/json",
            metadata=tags,
            mutable=True,
        )
        store.verify(stored)
        parts.append(StoredPart("transcript", stored, "application/json"))

        redacted = str(s.twilio_redacted).lower()
        segments: list[Segment] = []
        sentences = self._sentence_lines(
            client.pages(
                f"/v2/Transcripts/{sid}/Sentences", "sentences", {"PageSize": "5000", "Redacted": redacted}
            ),
            segments,
        )
        stored = upload_media(
            sentences,
            lambda: self._upload(ctx, store, key("sentences.jsonl"), "application/x-ndjson", tags, None),
            expected_length=None,
            file_format=None,
            channels=None,
        )
        store.verify(stored)
        parts.append(StoredPart("sentences", stored, "application/x-ndjson"))

        results: list[Any] = []
        for page in client.pages(
            f"/v2/Transcripts/{sid}/OperatorResults",
            "operator_results",
            {"PageSize": "1000", "Redacted": redacted},
        ):
            results.extend(page)
        body = json.dumps(
            {"transcript_sid": sid, "operator_results": results}, separators=(",", ":")
        ).encode()
        stored = store.put_bytes(
            key("operator-results.json"), body, content_type="application/json", metadata=tags, mutable=True
        )
        store.verify(stored)
        parts.append(StoredPart("operator_results", stored, "application/json"))

        media_url = client.media_url(sid, s.twilio_redacted)
        notes = [f"{len(segments)} sentences", f"{len(results)} operator results"]
        if media_url is None:
            notes.append("no media stored at Twilio")
        else:
            with client.stream_media(media_url) as response:
                content_type = (
                    response.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
                )
                fmt = MEDIA_TYPES.get(content_type)
                declared = response.headers.get("content-length")
                expected = int(declared) if declared and declared.isdigit() else None
                media_key = key(f"media.{fmt or 'bin'}")
                stored = upload_media(
                    response.iter_bytes(1024 * 1024),
                    lambda: self._upload(ctx, store, media_key, content_type, tags, expected),
                    expected_length=expected,
                    file_format=fmt,
                    channels=None,
                )
            store.verify(stored)
            parts.append(StoredPart("media", stored, content_type))
        return ArchiveResult(parts=parts, segments=segments, notes=notes)

    @staticmethod
    def _upload(
        ctx: PipelineContext,
        store: ObjectStore,
        key: str,
        content_type: str,
        tags: dict[str, str],
        expected: int | None,
    ) -> MediaUpload:
        return new_media_upload(
            store,
            key,
            content_type=content_type,
            metadata=tags,
            expected_length=expected,
            settings=ctx.settings,
        )

    @staticmethod
    def _sentence_lines(pages: Any, segments: list[Segment]) -> Any:
        """Each sentence once, in order (by sentence_index), as a JSON line; duplicates across pages
        are dropped, a gap or a step back is an error."""
        last = -1
        for page in pages:
            lines = []
            for sentence in page:
                index = sentence.get("sentence_index") if isinstance(sentence, dict) else None
                if not isinstance(index, int):
                    raise PermanentStepError("a sentence without sentence_index")
                if index <= last:
                    if index == last:
                        continue  # the same sentence again (a page boundary repeated)
                    raise PermanentStepError(f"sentence {index} after {last}: out of order")
                last = index
                lines.append(json.dumps(sentence, separators=(",", ":")).encode() + b"\n")
                channel = sentence.get("media_channel")
                segments.append(
                    Segment(
                        text=str(sentence.get("transcript") or ""),
                        kind="sentence",
                        track=f"channel_{channel}" if isinstance(channel, int) else None,
                        speaker=channel if isinstance(channel, int) else None,
                        confidence=_float(sentence.get("confidence")),
                        start_seconds=_float(sentence.get("start_time")),
                        end_seconds=_float(sentence.get("end_time")),
                    )
                )
            yield b"".join(lines)

    def archive_transcription(self, ctx: PipelineContext, item: ArchiveItem) -> ArchiveResult:
        raise PermanentStepError("a Twilio transcript has no separate transcription step")

    def delete(self, ctx: PipelineContext, item: ArchiveItem, scope: str) -> DeleteOutcome:
        return ctx.twilio_for(item.account_id).delete_transcript(
            validate("twilio_transcript", item.provider_id)
        )

    def exists(self, ctx: PipelineContext, item: ArchiveItem, scope: str) -> bool:
        return ctx.twilio_for(item.account_id).transcript_exists(
            validate("twilio_transcript", item.provider_id)
        )

    def required_roles(self, item: ArchiveItem) -> set[str]:
        return {"transcript", "sentences", "operator_results"}
