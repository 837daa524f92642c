"""What the tests check the code against, written from the providers' documentation and
independent of the code under test (docs/providers.md, webhook signatures)."""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["twilio_signature"]


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """``X-Twilio-Signature``: base64(HMAC-SHA1(auth token, URL + each parameter's name and value,
    sorted by name))."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()
