"""What the generic steps need to know about each kind of artifact.

An :class:`ArtifactHandler` archives an artifact (fetch, store, verify: an :class:`ArchiveResult`),
finishes a recording's pending transcription, deletes at the provider within a scope, and says
whether the provider still serves what was deleted. The handlers of all kinds are listed in
:mod:`archiver.pipeline.handlers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from archiver.db.models import ArtifactKind, ItemState
from archiver.pipeline.retry import NotReady
from archiver.providers.http import DeleteOutcome
from archiver.storage.objects import StoredObject

__all__ = [
    "ArchiveResult",
    "ArtifactHandler",
    "NotReady",
    "NothingToArchive",
    "Segment",
    "StoredPart",
    "deletion_scope",
]

if TYPE_CHECKING:
    from archiver.db.models import ArchiveItem
    from archiver.pipeline.context import PipelineContext


class NothingToArchive(Exception):
    """The provider reports there is nothing to fetch (a recording in error): record the outcome."""


@dataclass(frozen=True)
class Segment:
    text: str
    kind: str = "track"
    track: str | None = None
    speaker: int | None = None
    language: str | None = None
    confidence: float | None = None
    start_seconds: float | None = None
    end_seconds: float | None = None


@dataclass(frozen=True)
class StoredPart:
    role: str  # "metadata", "media", "transcription"
    stored: StoredObject
    content_type: str


@dataclass
class ArchiveResult:
    """Verified objects in S3 and what to record about them."""

    parts: list[StoredPart]
    next_state: ItemState = ItemState.ARCHIVED
    segments: list[Segment] | None = None  # None: keep the segments already stored
    partial: bool | None = None
    transcription_state: str | None = None
    transcription_outcome: str | None = None
    transcription_deadline: datetime | None = None
    notes: list[str] = field(default_factory=list)


class ArtifactHandler(Protocol):
    def archive(self, ctx: PipelineContext, item: ArchiveItem) -> ArchiveResult:
        """Fetch, store and verify; raise on any failure (nothing is recorded then)."""

    def archive_transcription(self, ctx: PipelineContext, item: ArchiveItem) -> ArchiveResult:
        """Settle a transcription the archive step left expected."""

    def delete(self, ctx: PipelineContext, item: ArchiveItem, scope: str) -> DeleteOutcome: ...

    def exists(self, ctx: PipelineContext, item: ArchiveItem, scope: str) -> bool: ...

    def required_roles(self, item: ArchiveItem) -> set[str]:
        """The objects that must be archived and verified before anything is deleted."""


def deletion_scope(kind: str, policy: str) -> str | None:
    """What the deletion policy deletes at the provider for this kind of artifact (None: nothing)."""
    if policy == "archive_only":
        return None
    if kind == ArtifactKind.RECORDING:
        return "recording" if policy == "delete" else "media"
    if kind == ArtifactKind.TRANSCRIPT:
        return "transcript" if policy == "delete" else None
    return "transcription" if policy == "delete" else None
