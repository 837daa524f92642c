"""How a simulator is started: the credentials it accepts, its accounts, where it delivers webhooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from archiver.simulator.exposure import webhook_target_allowed
from archiver.simulator.resources import ListOrder
from archiver.simulator.webhooks import IntakeTarget

__all__ = ["SimulatorConfig"]


@dataclass
class SimulatorConfig:
    #: Bandwidth API credentials (OAuth 2.0 client credentials) and its tokens' lifetime.
    client_id: str = "sim-client"
    client_secret: str = "sim-client-secret"  # noqa: S105 - the simulator's own default
    token_lifetime: float = 3600.0
    #: The decommissioned API user (HTTP Basic), accepted only when set: ``--legacy-basic-auth``.
    legacy_username: str | None = None
    legacy_password: str | None = None
    admin_token: str = "sim-admin-token"  # noqa: S105
    account_id: str = "9900000"
    #: The order of the capped account recordings list: Bandwidth documents none.
    list_order: ListOrder = "oldest-first"
    twilio_account_sid: str = "AC" + "0" * 32
    twilio_auth_token: str = "sim-twilio-token"  # noqa: S105
    twilio_secondary_auth_token: str | None = None
    #: Twilio API keys: SID (SK…) → secret.
    twilio_api_keys: dict[str, str] = field(default_factory=dict)
    #: Where the simulator is reached; Bandwidth URLs are ``{root}/api/v2/…``, Twilio's ``{root}/v2/…``.
    public_root: str = "http://127.0.0.1:9000"
    seed: int = 1
    intake: IntakeTarget | None = None
    twilio_intake_url: str | None = None
    twilio_webhook_format: Literal["form", "json"] = "form"
    duplicate_webhooks: bool = False
    #: Drop the callbacks the simulator sends on its own (requested transcriptions, completed
    #: transcripts), as a provider that never calls back.
    drop_callbacks: bool = False
    tick_seconds: float = 0.25
    #: Further origins ``/admin/webhooks`` may deliver to (``--webhook-target``), besides the intakes.
    webhook_targets: tuple[str, ...] = ()

    def webhook_target(self, url: str) -> str:
        """``url``, if it has the origin of a configured target; else :class:`ValueError` (a 400)."""
        targets = (self.intake.url if self.intake else None, self.twilio_intake_url, *self.webhook_targets)
        if not webhook_target_allowed(url, targets):
            raise ValueError(
                "intake_url is not a configured webhook target (--intake-url, --twilio-intake-url, "
                "--webhook-target)"
            )
        return url

    @property
    def bandwidth_base_url(self) -> str:
        return f"{self.public_root}/api/v2"
