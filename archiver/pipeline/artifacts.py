"""What the generic steps need to know about each kind of artifact.

An :class:`ArtifactHandler` fetches an artifact and stores a verified copy, deletes it at the
provider, and says whether the provider still serves it. Each kind registers one handler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from archiver.providers.bandwidth import DeleteOutcome
from archiver.storage import StoredObject

if TYPE_CHECKING:
    from archiver.db.models import ArchiveItem
    from archiver.pipeline.context import PipelineContext


@dataclass(frozen=True)
class Segment:
    text: str
    track: str | None = None
    speaker: int | None = None
    language: str | None = None
    confidence: float | None = None
    start_seconds: float | None = None
    end_seconds: float | None = None


@dataclass(frozen=True)
class ArchivedCopy:
    """A verified copy in S3 and the text to store in the database."""

    stored: StoredObject
    content_type: str
    segments: list[Segment] = field(default_factory=list)


class ArtifactHandler(Protocol):
    def archive(self, ctx: PipelineContext, item: ArchiveItem) -> ArchivedCopy:
        """Fetch, store, and verify; raise on any failure (nothing is recorded then)."""

    def delete(self, ctx: PipelineContext, item: ArchiveItem) -> DeleteOutcome: ...

    def exists(self, ctx: PipelineContext, item: ArchiveItem) -> bool: ...


_HANDLERS: dict[str, ArtifactHandler] = {}


def register(kind: str, handler: ArtifactHandler) -> None:
    _HANDLERS[kind] = handler


def handler_for(kind: str) -> ArtifactHandler:
    # Import the handler modules so that they register themselves.
    from archiver.pipeline import realtime_transcriptions  # noqa: F401

    try:
        return _HANDLERS[kind]
    except KeyError:
        raise LookupError(f"no handler for artifact kind {kind!r}") from None
