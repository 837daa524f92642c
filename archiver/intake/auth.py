"""Whose event is this? The account a webhook is for, and the credentials it must carry.

Each account has its own webhook path, ``/webhooks/bandwidth/{accountId}`` and
``/webhooks/twilio/{AccountSid}``: the path names the account, the account's own credentials are
checked (Bandwidth: its callback Basic credentials; Twilio: the signature with its auth token), and
the event inside must name the same account. So an event carrying account B's credentials on
account A's path is refused (401/403), an event for B on A's path with A's credentials is refused
(422), and an account not in the registry is refused before its body is read, as wrong
credentials are (401/403: the answers do not tell which accounts exist; the log says why). Nothing
is stored for any refusal.

The paths without an account (``/webhooks/bandwidth``, ``/webhooks/twilio``) serve the
single-account environment only; with a registry file they answer 404 naming the per-account path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging

from archiver.accounts import BandwidthAccount, Registry, TwilioAccount
from archiver.core.ids import InvalidId, validate
from archiver.intake.untrusted import EventRejected

__all__ = ["BasicAuthChecker", "UnknownAccount", "bandwidth_account", "twilio_account"]

log = logging.getLogger(__name__)


def _digest(value: bytes) -> bytes:
    """Compared as digests: equal lengths whatever was sent, so no timing tells a length."""
    return hashlib.sha256(value).digest()


class BasicAuthChecker:
    def __init__(self, username: str, password: str) -> None:
        self._username = _digest(username.encode("utf-8"))
        self._password = _digest(password.encode("utf-8"))

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        username, sep, password = decoded.partition(b":")
        # Both comparisons always run: no early exit that would time the username.
        user_ok = hmac.compare_digest(_digest(username), self._username)
        password_ok = hmac.compare_digest(_digest(password), self._password)
        return bool(sep) and user_ok and password_ok


class UnknownAccount(EventRejected):
    """An account not served here. Answered as wrong credentials are (Bandwidth 401, Twilio 403),
    so that the answers do not tell which account ids exist; logged with its reason."""

    def __init__(self, provider: str, account: str) -> None:
        status, code = (401, "unauthorized") if provider == "bandwidth" else (403, "forbidden")
        message = (
            "missing or wrong credentials"
            if provider == "bandwidth"
            else "missing or invalid X-Twilio-Signature"
        )
        super().__init__(status, code, message)
        self.reason = f"{provider} account {account} is not archived here"


def _unknown(provider: str, account: str) -> EventRejected:
    log.info("webhook refused: %s account %s is not in the registry", provider, account)
    return UnknownAccount(provider, account)


def bandwidth_account(registry: Registry, path_account: str | None) -> BandwidthAccount:
    """The account of a Bandwidth webhook: the path's, or the environment's single account."""
    if path_account is None:
        if registry.from_file:
            raise EventRejected(404, "per_account_path", "use /webhooks/bandwidth/{accountId}")
        found = next(iter(registry.bandwidth.values()), None)
    else:
        try:
            validate("bandwidth_account", path_account)
        except InvalidId:
            raise _unknown("bandwidth", path_account[:40]) from None
        found = registry.bandwidth_account(path_account)
    if found is None or found.callback_username is None or found.callback_password is None:
        raise _unknown("bandwidth", path_account or "(none configured)")
    return found


def twilio_account(registry: Registry, path_account: str | None) -> TwilioAccount:
    """The account of a Twilio webhook: the path's, or the environment's single account."""
    if path_account is None:
        if registry.from_file:
            raise EventRejected(404, "per_account_path", "use /webhooks/twilio/{AccountSid}")
        found = next(iter(registry.twilio.values()), None)
        if found is None or not found.signing_tokens():
            raise EventRejected(
                404, "not_configured", "Twilio is not configured here (ARCHIVER_TWILIO_AUTH_TOKEN)"
            )
        return found
    try:
        validate("twilio_account", path_account)
    except InvalidId:
        raise _unknown("twilio", path_account[:40]) from None
    found = registry.twilio_account(path_account)
    if found is None or not found.signing_tokens():
        raise _unknown("twilio", path_account)
    return found
