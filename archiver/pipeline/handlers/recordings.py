"""Bandwidth recordings: metadata, media and transcription archived, verified, then deleted.

Under ``{prefix}/bandwidth/{account}/{yyyy}/{mm}/{dd}/{callId}/{recordingId}/``:
``recording-metadata.json`` (the metadata as served), ``recording.wav`` or ``recording.mp3`` (the
media, hashed and uploaded part by part as it arrives, completed with a full-object
CRC32 only once whole and well-formed, then verified), and
``recording-transcription.json`` when there is one.

The media is always fetched from the URL built from validated ids, never from a ``mediaUrl`` found
in an event. A recording is not deleted while its transcription is still expected: the archive step
leaves it ``awaiting_transcription`` until the callback comes or, at its deadline, the metadata says
how it ended.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from archiver.accounts import BandwidthAccount
from archiver.core.ids import validate
from archiver.core.timestamps import parse_timestamp
from archiver.db.models import ItemState, TranscriptionState
from archiver.pipeline.handlers.base import (
    ArchiveResult,
    NothingToArchive,
    NotReady,
    Segment,
    StoredPart,
)
from archiver.pipeline.retry import PermanentStepError
from archiver.providers.errors import CredentialsRefused, ProviderRejected
from archiver.providers.http import DeleteOutcome
from archiver.storage.media_upload import MediaUpload, new_media_upload, upload_media
from archiver.storage.objects import bandwidth_call_key

if TYPE_CHECKING:
    from archiver.db.models import ArchiveItem
    from archiver.pipeline.context import PipelineContext

log = logging.getLogger(__name__)

CONTENT_TYPES = {"wav": "audio/vnd.wave", "mp3": "audio/mpeg"}
#: How often to look again at a recording the provider is still processing.
PROCESSING_RECHECK_SECONDS = 120.0
#: Bandwidth transcribes only recordings longer than 500 ms and shorter than 4 h.
TRANSCRIBABLE = (0.5, 4 * 3600.0)
#: The first transcript is the call party (A-leg in a <Transfer>), the second the played audio
#: (B-leg) (docs/providers.md, "Bandwidth: callbacks").
CHANNEL_ROLES = ("party_or_a_leg", "playback_or_b_leg")
_DURATION = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: object) -> float | None:
    """ISO-8601 duration (``PT13.67S``, ``PT1H2M3.5S``) in seconds."""
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value.strip())
    if not match or value.strip() in ("P", "PT"):
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _ids(item: ArchiveItem) -> tuple[str, str, str]:
    return (
        validate("bandwidth_account", item.account_id),
        validate("bandwidth_call", item.call_id),
        validate("bandwidth_recording", item.provider_id),
    )


def transcription_segments(data: Any) -> list[Segment]:
    """``recordingTranscriptions``: one segment per channel transcript (labelled by its role), then
    the clips, when the provider gives them (``speaker`` and ``clips`` are optional)."""
    if not isinstance(data, dict) or not isinstance(data.get("transcripts"), list):
        raise PermanentStepError("recording transcription has no 'transcripts' list")
    segments = []
    for index, transcript in enumerate(data["transcripts"]):
        if not isinstance(transcript, dict):
            raise PermanentStepError("recording transcript is not an object")
        speaker = transcript.get("speaker") if isinstance(transcript.get("speaker"), int) else index
        confidence = transcript.get("confidence")
        segments.append(
            Segment(
                text=str(transcript.get("text") or ""),
                kind="transcript",
                track=CHANNEL_ROLES[index] if index < len(CHANNEL_ROLES) else f"channel_{index}",
                speaker=speaker,
                confidence=float(confidence) if isinstance(confidence, int | float) else None,
            )
        )
    for clip in data.get("clips") or []:
        if not isinstance(clip, dict):
            continue
        speaker = clip.get("speaker") if isinstance(clip.get("speaker"), int) else None
        numbers = {k: clip.get(k) for k in ("confidence", "startTimeSeconds", "endTimeSeconds")}
        floats = {k: float(v) if isinstance(v, int | float) else None for k, v in numbers.items()}
        segments.append(
            Segment(
                text=str(clip.get("text") or ""),
                kind="clip",
                track=CHANNEL_ROLES[speaker]
                if speaker is not None and speaker < len(CHANNEL_ROLES)
                else None,
                speaker=speaker,
                confidence=floats["confidence"],
                start_seconds=floats["startTimeSeconds"],
                end_seconds=floats["endTimeSeconds"],
            )
        )
    return segments


class RecordingHandler:
    # --- archive: metadata, media, and the transcription if it is there --------------------------------

    def archive(self, ctx: PipelineContext, item: ArchiveItem) -> ArchiveResult:
        account_id, call_id, recording_id = _ids(item)
        document = ctx.bandwidth_for(item.account_id).get_recording(account_id, call_id, recording_id)
        meta = document.data if isinstance(document.data, dict) else {}
        status = str(meta.get("status") or "").lower()
        if status == "error":
            raise NothingToArchive("the provider reports the recording in error: no media to fetch")
        file_format = meta.get("fileFormat")
        if status in ("processing", "") or not meta.get("mediaUrl"):
            raise NotReady(
                f"recording not downloadable yet (status {status or 'unknown'})", PROCESSING_RECHECK_SECONDS
            )
        if file_format not in CONTENT_TYPES:
            raise PermanentStepError(f"unknown fileFormat {file_format!r}")
        channels = meta.get("channels") if isinstance(meta.get("channels"), int) else None
        duration = parse_duration(meta.get("duration"))
        day = parse_timestamp(meta.get("startTime")) or item.provider_started_at or item.created_at
        prefix = ctx.store_for("bandwidth", item.account_id).prefix

        def key(filename: str) -> str:
            return bandwidth_call_key(prefix, account_id, day, call_id, recording_id, filename)

        tags = {
            "provider": "bandwidth",
            "account-id": account_id,
            "call-id": call_id,
            "recording-id": recording_id,
        }
        stored_meta = ctx.store_for("bandwidth", item.account_id).put_bytes(
            key("recording-metadata.json"),
            document.body,
            content_type="application/json",
            metadata=tags,
            mutable=True,  # a later fetch may differ (the transcription's status): the first copy stands
        )
        ctx.store_for("bandwidth", item.account_id).verify(stored_meta)
        parts = [StoredPart("metadata", stored_meta, "application/json")]
        parts.append(
            self._archive_media(
                ctx,
                item,
                key(f"recording.{file_format}"),
                file_format,
                channels,
                duration,
                status == "partial",
                tags,
            )
        )

        result = ArchiveResult(parts=parts, partial=status == "partial" or item.partial)
        self._settle_transcription(ctx, item, meta, duration, key, tags, result, first_pass=True)
        return result

    def _archive_media(
        self,
        ctx: PipelineContext,
        item: ArchiveItem,
        key: str,
        file_format: str,
        channels: int | None,
        duration: float | None,
        partial: bool,
        tags: dict[str, str],
    ) -> StoredPart:
        metadata = {**tags, "file-format": file_format, "partial": str(partial).lower()}
        if channels is not None:
            metadata["channels"] = str(channels)
        if duration is not None:
            metadata["duration-seconds"] = f"{duration:g}"

        with ctx.bandwidth_for(item.account_id).stream_media(*_ids(item)) as response:
            declared = response.headers.get("content-length")
            expected = int(declared) if declared and declared.isdigit() else None

            def make_upload() -> MediaUpload:
                return new_media_upload(
                    ctx.store_for("bandwidth", item.account_id),
                    key,
                    content_type=CONTENT_TYPES[file_format],
                    metadata=metadata,
                    expected_length=expected,
                    settings=ctx.settings,
                )

            stored = upload_media(
                response.iter_bytes(1024 * 1024),
                make_upload,
                expected_length=expected,
                file_format=file_format,
                channels=channels,
            )
        ctx.store_for("bandwidth", item.account_id).verify(stored)
        return StoredPart("media", stored, CONTENT_TYPES[file_format])

    # --- the transcription ----------------------------------------------------------------------------

    def archive_transcription(self, ctx: PipelineContext, item: ArchiveItem) -> ArchiveResult:
        account_id, call_id, recording_id = _ids(item)
        meta = ctx.bandwidth_for(item.account_id).get_recording(account_id, call_id, recording_id).data
        day = parse_timestamp(meta.get("startTime")) if isinstance(meta, dict) else None
        day = day or item.provider_started_at or item.created_at

        def key(filename: str) -> str:
            return bandwidth_call_key(
                ctx.store_for("bandwidth", item.account_id).prefix,
                account_id,
                day,
                call_id,
                recording_id,
                filename,
            )

        tags = {
            "provider": "bandwidth",
            "account-id": account_id,
            "call-id": call_id,
            "recording-id": recording_id,
        }
        result = ArchiveResult(parts=[])
        self._settle_transcription(
            ctx,
            item,
            meta if isinstance(meta, dict) else {},
            parse_duration(meta.get("duration")) if isinstance(meta, dict) else None,
            key,
            tags,
            result,
            first_pass=False,
        )
        return result

    def _settle_transcription(
        self,
        ctx: PipelineContext,
        item: ArchiveItem,
        meta: dict[str, Any],
        duration: float | None,
        key: Any,
        tags: dict[str, str],
        result: ArchiveResult,
        first_pass: bool,
    ) -> None:
        """Archive the transcription if available; otherwise decide whether one is still expected."""
        now = ctx.clock.now()
        s = ctx.settings
        transcription = meta.get("transcription") if isinstance(meta.get("transcription"), dict) else None
        status = str(transcription.get("status") or "").lower() if transcription else ""
        wait = timedelta(seconds=s.transcription_wait_seconds)
        if transcription and status in ("available", "completed", "complete"):
            account_id, call_id, recording_id = _ids(item)
            document = ctx.bandwidth_for(item.account_id).get_recording_transcription(
                account_id, call_id, recording_id
            )
            segments = transcription_segments(document.data)
            stored = ctx.store_for("bandwidth", item.account_id).put_bytes(
                key("recording-transcription.json"),
                document.body,
                content_type="application/json",
                metadata=tags,
            )
            ctx.store_for("bandwidth", item.account_id).verify(stored)
            result.parts.append(StoredPart("transcription", stored, "application/json"))
            result.segments = segments
            result.transcription_state = TranscriptionState.ARCHIVED
            result.next_state = ItemState.ARCHIVED
            return
        if transcription and status in ("processing", "none", ""):
            expected_since = item.archived_at or now
            if not first_pass and now - expected_since > timedelta(seconds=s.transcription_max_wait_seconds):
                waited = f"{s.transcription_max_wait_seconds:.0f}s"
                raise PermanentStepError(
                    f"transcription still {status or 'pending'} after {waited}; "
                    "the recording is kept at the provider for an operator to decide"
                )
            deadline = now + wait
            if not first_pass:
                previous = item.transcription_deadline
                delay = (
                    (previous - now).total_seconds() if previous and previous > now else wait.total_seconds()
                )
                log.warning("%s: transcription still %s; looking again in %.0fs", item.ref, status, delay)
                raise NotReady(f"transcription still {status or 'pending'}", max(delay, 60.0))
            result.transcription_state = TranscriptionState.EXPECTED
            result.transcription_deadline = deadline
            result.next_state = ItemState.AWAITING_TRANSCRIPTION
            return
        if transcription:
            result.transcription_state = TranscriptionState.UNAVAILABLE
            result.transcription_outcome = f"transcription status {status!r}"
            result.next_state = ItemState.ARCHIVED
            return
        # No transcription at the provider.
        if not first_pass and item.transcription_state == TranscriptionState.EXPECTED:
            requested_deadline = item.transcription_deadline
            if requested_deadline is not None and now < requested_deadline:
                raise NotReady(
                    "requested transcription not reported yet", (requested_deadline - now).total_seconds()
                )
            result.transcription_state = TranscriptionState.UNAVAILABLE
            result.transcription_outcome = "requested transcription never reported by the provider"
            result.next_state = ItemState.ARCHIVED
            return
        transcribable = duration is not None and TRANSCRIBABLE[0] < duration < TRANSCRIBABLE[1]
        wanted = first_pass and s.request_transcriptions and transcribable
        if wanted and self._request_transcription(ctx, item, result):
            result.transcription_deadline = now + wait
            result.next_state = ItemState.AWAITING_TRANSCRIPTION
            return
        result.transcription_state = result.transcription_state or TranscriptionState.NONE
        result.next_state = ItemState.ARCHIVED

    def _request_transcription(self, ctx: PipelineContext, item: ArchiveItem, result: ArchiveResult) -> bool:
        s = ctx.settings
        account = ctx.tenants.entry("bandwidth", item.account_id)
        assert isinstance(account, BandwidthAccount)
        if not (s.public_base_url and account.callback_username and account.callback_password):
            result.notes.append(
                "transcription not requested: ARCHIVER_PUBLIC_BASE_URL or callback credentials unset"
            )
            return False
        # The callback comes back on the account's own path, with the account's own credentials.
        path = "/webhooks/bandwidth" + (f"/{item.account_id}" if ctx.accounts.current().from_file else "")
        try:
            ctx.bandwidth_for(item.account_id).request_transcription(
                *_ids(item),
                callback_url=f"{s.public_base_url}{path}",
                username=account.callback_username,
                password=account.callback_password.get(),
            )
        except (ProviderRejected, CredentialsRefused) as exc:
            if isinstance(exc, CredentialsRefused) and exc.status != 403:
                raise  # refused credentials: the account's problem (the item waits for it)
            # A 403 here (with credentials the rest of the API accepts): the credential lacks the
            # right to ask for transcriptions, an option of ours; the recording goes on without one.
            result.transcription_state = TranscriptionState.UNAVAILABLE
            result.transcription_outcome = f"transcription request refused: {exc}"
            return False
        result.transcription_state = TranscriptionState.EXPECTED
        result.notes.append("transcription requested")
        return True

    # --- deletion ----------------------------------------------------------------------------------

    def delete(self, ctx: PipelineContext, item: ArchiveItem, scope: str) -> DeleteOutcome:
        if scope == "media":
            return ctx.bandwidth_for(item.account_id).delete_recording_media(*_ids(item))
        return ctx.bandwidth_for(item.account_id).delete_recording(*_ids(item))

    def exists(self, ctx: PipelineContext, item: ArchiveItem, scope: str) -> bool:
        if scope == "media":
            return ctx.bandwidth_for(item.account_id).media_exists(*_ids(item))
        return ctx.bandwidth_for(item.account_id).recording_exists(*_ids(item))

    def required_roles(self, item: ArchiveItem) -> set[str]:
        roles = {"metadata", "media"}
        if item.transcription_state == TranscriptionState.ARCHIVED:
            roles.add("transcription")
        return roles
