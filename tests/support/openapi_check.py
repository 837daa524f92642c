"""Validating real simulator responses against the providers' OpenAPI specs with openapi-core.

The specs live in ``../shared/specs`` beside the repository, or beside the local repository a clone
was made from (``ARCHIVER_SPECS_DIR`` overrides both).
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

import httpx
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse


def _origin() -> Path | None:
    """The repository this checkout was cloned from, when that is a local path."""
    try:
        url = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "config", "--get", "remote.origin.url"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
    except OSError:
        return None
    path = Path(url.removeprefix("file://")) if url.startswith(("/", "file://")) else None
    return path.resolve() if path is not None and path.is_dir() else None


def _specs_dir() -> Path:
    """``ARCHIVER_SPECS_DIR``, else the first ``shared/specs`` beside the repository or above it,
    else beside the local repository a fresh clone was made from."""
    if os.environ.get("ARCHIVER_SPECS_DIR"):
        return Path(os.environ["ARCHIVER_SPECS_DIR"])
    here = Path(__file__).resolve()
    origin = _origin()
    for parent in [*here.parents, *(origin.parents if origin else [])]:
        if (parent / "shared" / "specs").is_dir():
            return parent / "shared" / "specs"
    return here.parents[3] / "shared" / "specs"


SPECS_DIR = _specs_dir()
BANDWIDTH_HOST = "https://voice.bandwidth.com"
TWILIO_HOST = "https://intelligence.twilio.com"


@cache
def spec(name: str) -> OpenAPI:
    path = SPECS_DIR / name
    if not path.exists():
        raise AssertionError(
            f"provider spec {path} not found: set ARCHIVER_SPECS_DIR to the folder of the specs"
        )
    return OpenAPI.from_file_path(str(path))


def _content_type(headers: httpx.Headers) -> str:
    return headers.get("content-type", "application/json").split(";")[0].strip()


def validate(response: httpx.Response) -> None:
    """Raise unless ``response`` (and its request) matches the provider's spec."""
    request = response.request
    path = request.url.path
    if path.startswith("/api/v2/"):
        api, host = spec("bandwidth-voice.yml"), BANDWIDTH_HOST
    else:
        api, host = spec("twilio-intelligence-v2.json"), TWILIO_HOST
    mock_request = MockRequest(
        host,
        request.method.lower(),
        path,
        args=dict(request.url.params),
        headers=dict(request.headers),
        data=request.content or None,
        content_type=_content_type(request.headers),
    )
    mock_response = MockResponse(
        response.content,
        status_code=response.status_code,
        headers=dict(response.headers),
        content_type=_content_type(response.headers),
    )
    api.validate_response(mock_request, mock_response)
