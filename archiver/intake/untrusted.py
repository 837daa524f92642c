"""Untrusted webhook input, made safe to parse and to store.

Invariant: whatever a caller sends, the intake answers a 4xx with a JSON error and stores nothing,
never a 5xx. So before anything else looks at it:

* JSON is refused when nested deeper than :data:`MAX_DEPTH` (Python's parser recurses: thousands
  of levels raise ``RecursionError``); the depth is measured before parsing;
* every string, keys included, is refused if it holds a NUL (PostgreSQL text cannot store one: the
  event could never be stored, and a provider would retry it forever) or a lone surrogate (it
  cannot be encoded as UTF-8, for the database or a hash).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_DEPTH", "EventRejected", "check_strings", "load_json", "load_json_object"]


class EventRejected(Exception):
    """The request cannot be accepted; ``status`` and ``message`` go back to the caller as JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


#: Provider events nest three levels; anything far deeper is not an event.
MAX_DEPTH = 32

# A JSON string (possessive: no backtracking over a long unterminated one), or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*+"|[\[\]{}]')


def _too_deep(text: str) -> bool:
    if text.count("{") + text.count("[") <= MAX_DEPTH:
        return False  # the common case: a few brackets, no scan
    depth = 0
    for match in _TOKENS.finditer(text):
        bracket = match.group()
        if bracket in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif bracket in "]}":
            depth -= 1
    return False


def load_json(text: str) -> Any:
    """Parse ``text`` as JSON, refusing deep nesting and unstorable strings."""
    if _too_deep(text):
        raise EventRejected(400, "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text)
    except ValueError:
        raise EventRejected(400, "malformed_json", "body is not valid JSON") from None
    check_strings(value)
    return value


def load_json_object(raw: bytes) -> tuple[dict[str, Any], str]:
    """A body that must be a JSON object: the object and its text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EventRejected(400, "malformed_json", "body is not valid UTF-8 JSON") from None
    value = load_json(text)
    if not isinstance(value, dict):
        raise EventRejected(400, "malformed_json", "body is not a JSON object")
    return value, text


def _check_string(value: str) -> None:
    if "\x00" in value:
        raise EventRejected(422, "nul_character", "a NUL character cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EventRejected(422, "invalid_unicode", "a lone surrogate is not text") from None


def check_strings(value: Any, depth: int = 0) -> None:
    """Refuse NUL and lone surrogates anywhere in ``value`` (bounded by :data:`MAX_DEPTH`)."""
    if depth > MAX_DEPTH:
        raise EventRejected(400, "too_deep", f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_string(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _check_string(key)
            check_strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_strings(item, depth + 1)
