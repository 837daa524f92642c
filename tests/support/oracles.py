"""What the tests check the code against, written from the providers' documentation and
independent of the code under test (docs/providers.md, webhook signatures)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence

__all__ = ["twilio_signature"]


def twilio_signature(token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """``X-Twilio-Signature``: base64(HMAC-SHA1(auth token, URL + each parameter's name and value,
    sorted by name; a repeated parameter's values sorted too))."""
    payload = url
    for name in sorted(params):
        values = [params[name]] if isinstance(params[name], str) else sorted(params[name])
        payload += "".join(name + value for value in values)
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()
