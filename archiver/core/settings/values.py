"""Values the settings' declarations share."""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["BANDWIDTH_TOKEN_URL", "FILE_SETTING_MEANING", "DeletionPolicy", "shown"]

#: Bandwidth's OAuth 2.0 token endpoint (docs/providers.md).
BANDWIDTH_TOKEN_URL = "https://api.bandwidth.com/api/v1/oauth2/token"  # noqa: S105 - a URL

#: What every ``…_FILE`` setting means.
FILE_SETTING_MEANING = (
    "The secret read from this file instead (the Docker and Kubernetes secrets convention; a "
    "trailing newline is ignored; setting both a secret and its file is an error). A provider "
    "secret is read again when the provider refuses the one held: rotate it by rewriting the "
    "file, no restart needed."
)

#: delete: the whole artifact at the provider (a recording: metadata, media and transcription);
#: delete_media: only a recording's media (other artifacts are kept); archive_only: nothing.
DeletionPolicy = Literal["delete", "delete_media", "archive_only"]


def shown(default: str) -> dict[str, Any]:
    """How the configuration reference shows a default the code computes (``json_schema_extra``)."""
    return {"shown_default": default}
