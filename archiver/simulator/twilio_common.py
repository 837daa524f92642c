"""What Twilio's API answers share: its error body (an unknown path included: 20404), the operator
types, and a query value read as bytes."""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from archiver.simulator.resources import TwilioTranscript
    from archiver.simulator.state import World

__all__ = ["ERRORS", "OPERATOR_TYPES", "BadParameter", "operator_result", "raw", "twilio_error"]

ERRORS = {
    400: (20001, "Invalid parameter"),
    401: (20003, "Authenticate"),
    404: (20404, "The requested resource was not found"),
    405: (20004, "Method not allowed"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}
OPERATOR_TYPES = [
    "conversation-classify",
    "utterance-classify",
    "extract",
    "extract-normalize",
    "text-generation",
]


def twilio_error(status: int, message: str | None = None, headers: dict[str, str] | None = None) -> Response:
    code, default = ERRORS.get(status, (20000 + status, "Error"))
    body = {
        "code": code,
        "message": message or default,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


class BadParameter(Exception):
    pass


def raw(text: str) -> bytes:
    """A query value as bytes: compared as such, whatever characters it holds."""
    return text.encode("utf-8", "surrogateescape")


def operator_result(world: World, base_url: str, t: TwilioTranscript, index: int) -> dict[str, Any]:
    """The ``index``-th operator result of ``t``, the same at every read (seeded by the SID)."""
    rng = random.Random(f"{t.sid}:op:{index}")
    sid = "LY" + hashlib.md5(f"{t.sid}:{index}".encode(), usedforsecurity=False).hexdigest()
    kind = OPERATOR_TYPES[index % len(OPERATOR_TYPES)]
    return {
        "operator_type": kind,
        "name": f"{kind}-operator",
        "operator_sid": sid,
        "extract_match": kind.startswith("extract"),
        "match_probability": round(rng.random(), 2),
        "normalized_result": None,
        "utterance_results": [],
        "utterance_match": False,
        "predicted_label": rng.choice(["positive", "neutral", "negative"]),
        "predicted_probability": round(rng.random(), 2),
        "label_probabilities": {},
        "extract_results": {},
        "text_generation_results": {"summary": world.sentence(rng)},
        "json_results": {},
        "transcript_sid": t.sid,
        "url": f"{base_url}/v2/Transcripts/{t.sid}/OperatorResults/{sid}",
    }
