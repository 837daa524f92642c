"""The providers: Bandwidth's and Twilio's accounts, credentials and hosts, and how requests
to them are made and paced."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from archiver.core.settings.values import BANDWIDTH_TOKEN_URL, FILE_SETTING_MEANING, shown

__all__ = ["ProviderSettings"]


class ProviderSettings(BaseModel):
    """The providers: Bandwidth's and Twilio's accounts, credentials and hosts, and how requests
    to them are made and paced."""

    accounts_file: str | None = Field(
        default=None,
        description=(
            "The accounts registry (TOML, docs/accounts.md): every Bandwidth and Twilio account served, "
            "each with its credentials (references to files or variables), webhook credentials, bucket "
            "and rules. Unset: one account per provider, from the `ARCHIVER_BANDWIDTH_*` and "
            "`ARCHIVER_TWILIO_*` settings; set, those per-account settings (and the intake's Basic "
            "credentials) must be unset."
        ),
    )
    accounts_reload_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description=(
            "How often each process looks whether the registry file changed (its size, time or inode); "
            "a changed file is read and validated again, and a file that no longer validates is "
            "refused (logged as an ERROR) while the last good registry stays in use."
        ),
    )
    bandwidth_account_id: str | None = Field(
        default=None,
        description=("When set, the intake refuses events of other accounts (422)."),
    )
    bandwidth_client_id: str | None = Field(
        json_schema_extra=shown("— (workers: required)"),
        default=None,
        description=(
            'Bandwidth\'s OAuth 2.0 client credentials ("API Credentials" in the Bandwidth App, Account > '
            "API Credentials), the only way in since 2026-12-02."
        ),
    )
    bandwidth_client_secret: SecretStr | None = Field(
        json_schema_extra=shown("— (workers: required)"),
        default=None,
        description=(
            'Bandwidth\'s OAuth 2.0 client credentials ("API Credentials" in the Bandwidth App, Account > '
            "API Credentials), the only way in since 2026-12-02."
        ),
    )
    bandwidth_client_secret_file: str | None = Field(default=None, description=FILE_SETTING_MEANING)
    bandwidth_token_url: str = Field(
        default=BANDWIDTH_TOKEN_URL,
        description=("Where access tokens are obtained."),
    )
    bandwidth_username: str | None = Field(
        default=None,
        description=(
            "**Decommissioned by Bandwidth on 2026-12-02.** Set alone, they stop a worker with a message "
            "naming the new settings; set beside the client credentials, they are ignored (with a "
            "warning)."
        ),
    )
    bandwidth_password: SecretStr | None = Field(
        default=None,
        description=(
            "**Decommissioned by Bandwidth on 2026-12-02.** Set alone, they stop a worker with a message "
            "naming the new settings; set beside the client credentials, they are ignored (with a "
            "warning)."
        ),
    )
    bandwidth_base_url: str = Field(
        default="https://voice.bandwidth.com/api/v2",
        description=("The only host Bandwidth data is fetched from, and the only one its token is sent to."),
    )
    twilio_account_sid: str | None = Field(
        default=None,
        description=(
            "The Twilio account and its (primary) auth token: the key of webhook signatures, and the REST"
            " credentials unless an API key is set. Without them `/webhooks/twilio` answers 404."
        ),
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None,
        description=(
            "The Twilio account and its (primary) auth token: the key of webhook signatures, and the REST"
            " credentials unless an API key is set. Without them `/webhooks/twilio` answers 404."
        ),
    )
    twilio_auth_token_file: str | None = Field(default=None, description=FILE_SETTING_MEANING)
    twilio_secondary_auth_token: SecretStr | None = Field(
        default=None,
        description=(
            "While the auth token is rotated: a webhook signed with this one is accepted too (and nothing"
            " else)."
        ),
    )
    twilio_secondary_auth_token_file: str | None = Field(default=None, description=FILE_SETTING_MEANING)
    twilio_api_key_sid: str | None = Field(
        default=None,
        description=(
            "An API key (`SK` + 32 hex) and its secret, Twilio's recommended REST credentials; used for "
            "every REST request when set."
        ),
    )
    twilio_api_key_secret: SecretStr | None = Field(
        default=None,
        description=(
            "An API key (`SK` + 32 hex) and its secret, Twilio's recommended REST credentials; used for "
            "every REST request when set."
        ),
    )
    twilio_api_key_secret_file: str | None = Field(default=None, description=FILE_SETTING_MEANING)
    twilio_base_url: str = Field(
        default="https://intelligence.twilio.com",
        description=("The only host Twilio API requests (and followed page URLs) go to."),
    )
    twilio_media_hosts: str = Field(
        json_schema_extra=shown("the API's host"),
        default="",
        description=(
            "Comma-separated hosts media may be downloaded from, over `https` on the default port only "
            "(`*.example.com` matches subdomains); an entry with a scheme (`http://127.0.0.1:9000`) "
            "allows exactly that origin (the simulator). Default: the host of `ARCHIVER_TWILIO_BASE_URL` "
            "(its origin if it is not plain `https`)."
        ),
    )
    twilio_redacted: bool = Field(
        default=False,
        description=(
            "Archive Twilio's redacted sentences, operator results and media instead of the raw ones."
        ),
    )
    twilio_poll_seconds: float = Field(
        default=60,
        gt=0,
        description=(
            "How often a not-yet-completed transcript is looked at; after how long it is dead-lettered."
        ),
    )
    twilio_max_wait_seconds: float = Field(
        default=24 * 3600,
        gt=0,
        description=(
            "How often a not-yet-completed transcript is looked at; after how long it is dead-lettered."
        ),
    )
    http_connect_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description=("Provider HTTP timeouts."),
    )
    http_read_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description=("Provider HTTP timeouts."),
    )
    http_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description=(
            "In-place retries of a provider GET or DELETE after a 5xx or a dropped connection (jittered "
            "backoff doubling from the base, at most 4 s), before the step's retry policy re-runs the "
            "whole step. 429s are left to the step's policy."
        ),
    )
    http_retry_backoff_seconds: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description=(
            "In-place retries of a provider GET or DELETE after a 5xx or a dropped connection (jittered "
            "backoff doubling from the base, at most 4 s), before the step's retry policy re-runs the "
            "whole step. 429s are left to the step's policy."
        ),
    )
    bandwidth_requests_per_second: float = Field(
        default=0.0,
        ge=0,
        description=("The provider account's request budget, shared by all workers (token bucket in Redis)."),
    )
    twilio_requests_per_second: float = Field(
        default=0.0,
        ge=0,
        description=("The provider account's request budget, shared by all workers (token bucket in Redis)."),
    )
    rate_budget_burst: float | None = Field(
        json_schema_extra=shown("the rate"),
        default=None,
        gt=0,
        description=("Requests that may go at once after a quiet spell."),
    )
    rate_budget_max_wait_seconds: float = Field(
        default=5.0,
        ge=0,
        description=("Longest wait for a slot; a later slot reschedules the step."),
    )
    account_pause_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "An account whose credentials are refused is paused: checked again after the first, doubling "
            "up to the second, which is also how often the refusal is logged as an ERROR."
        ),
    )
    account_pause_max_seconds: float = Field(
        default=300.0,
        gt=0,
        le=600,
        description=(
            "An account whose credentials are refused is paused: checked again after the first, doubling "
            "up to the second, which is also how often the refusal is logged as an ERROR."
        ),
    )
    redis_url: str | None = Field(
        json_schema_extra=shown("the broker's URL, when it is Redis"),
        default=None,
        repr=False,
        description=("Redis for the rate budgets and the workers' shared metric counters."),
    )
