"""Text for a terminal: what a provider or an attacker wrote cannot drive it.

Errors, provider messages and history details reach ``archiver status`` and ``archiver items``
verbatim from the outside world. Printed as they are, an escape sequence could rewrite the screen,
a newline could forge a line of the report, a bidirectional override could reorder it. Every free
text value goes through :func:`printable` before it is printed; JSON output needs nothing (its
encoder escapes control characters)."""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

#: Control, format (bidi overrides, zero-width), surrogate, private-use and unassigned characters,
#: and the line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object) -> str:
    """``str(value)`` with every non-printable character escaped (``\\x1b``, ``\\u202e``); a
    backslash is doubled, so an escape in the output always means an escaped character."""
    text = "" if value is None else str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        "\\\\"
        if char == "\\"
        else _escape(char)
        if unicodedata.category(char) in _ESCAPED_CATEGORIES
        else char
        for char in text
    )
