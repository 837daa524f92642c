"""What Twilio's API answers share: its error body (an unknown path included: 20404), the operator
types, and a query value read as bytes."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

__all__ = ["ERRORS", "OPERATOR_TYPES", "BadParameter", "raw", "twilio_error"]

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
