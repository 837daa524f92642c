"""Each account's own provider client, token, rate budget and storage target, made on first use.

Every request of an item goes out with its account's credentials (invariant: never another's), to
its account's bucket and prefix. A client is kept while its registry entry is unchanged; when the
entry changes (a rotated secret, another bucket) the next request builds a new one. Accounts share
what carries no credential: one HTTP connection pool per process, and one S3 client per
(region, endpoint, role), so a hundred accounts cost a hundred small objects, not a hundred pools.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import httpx

from archiver.accounts import ANY_ACCOUNT, Account, Accounts, BandwidthAccount, Secret, TwilioAccount
from archiver.core.clock import Clock
from archiver.core.config import ConfigError, Settings
from archiver.core.counters import SharedCounters
from archiver.core.rate_budget import RateBudget
from archiver.providers.bandwidth import BandwidthClient
from archiver.providers.credentials import SecretSource
from archiver.providers.http import ProviderHttp
from archiver.providers.twilio import TwilioClient
from archiver.storage.objects import ObjectStore, make_s3_client
from archiver.storage.sessions import assumed_role_session

if TYPE_CHECKING:
    import redis
    from mypy_boto3_s3 import S3Client

__all__ = ["AccountClients", "AccountUnknown"]

log = logging.getLogger(__name__)


class AccountUnknown(Exception):
    """The item's account is not in the registry (removed, or never added): no work for it. Its
    items wait, visible, and resume if it comes back."""

    def __init__(self, provider: str, account_id: str) -> None:
        super().__init__(f"{provider} account {account_id} is not in the accounts registry")
        self.provider, self.account_id = provider, account_id


class AccountClients:
    """This process's clients and stores, one per account (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        clock: Clock,
        counters: SharedCounters | None,
        shared_redis: redis.Redis | None,
    ) -> None:
        self.settings, self.accounts, self.clock = settings, accounts, clock
        self._counters, self._redis = counters, shared_redis
        self._lock = threading.Lock()  # held to publish a client, never while one is made
        self._clients: dict[tuple[str, str], tuple[str, Any]] = {}
        self._s3: dict[tuple[Any, ...], S3Client] = {}
        self._transport: httpx.HTTPTransport | None = None

    # --- the registry -----------------------------------------------------------------------

    def entry(self, provider: str, account_id: str) -> Account:
        found = self.accounts.current().get(provider, account_id)
        if found is None:
            raise AccountUnknown(provider, account_id)
        return found

    def knows(self, provider: str, account_id: str) -> bool:
        return self.accounts.current().knows(provider, account_id)

    def deletion_policy(self, provider: str, account_id: str) -> str:
        found = self.accounts.current().get(provider, account_id)
        if found is not None and found.deletion_policy is not None:
            return found.deletion_policy
        return self.settings.deletion_policy

    # --- provider clients -------------------------------------------------------------------

    def _cached(self, key: tuple[str, str], entry: Account, build: Any) -> Any:
        """The client made for ``entry``, made now if there is none or the entry changed. Made
        outside the lock: one account's slow start (an AssumeRole, say) holds up no other account."""
        fingerprint = entry.fingerprint()
        held = self._clients.get(key)
        if held is not None and held[0] == fingerprint:
            return held[1]
        made = build()
        with self._lock:
            again = self._clients.get(key)
            if again is not None and again[0] == fingerprint:
                return again[1]  # another thread made one meanwhile: the first one stays
            self._clients[key] = (fingerprint, made)
        if held is not None:
            log.info("%s account %s: its registry entry changed; new client", key[0], key[1])
        return made

    @property
    def transport(self) -> httpx.HTTPTransport:
        """The connection pool every account's provider client shares (no credential in it)."""
        if self._transport is None:
            self._transport = httpx.HTTPTransport(
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=20)
            )
        return self._transport

    def _secret(self, secret: Secret | None, what: str) -> SecretSource:
        assert secret is not None, what
        return SecretSource(secret.get(), secret.path, secret.source)

    def bandwidth(self, account_id: str) -> BandwidthClient:
        entry = self.entry("bandwidth", account_id)
        assert isinstance(entry, BandwidthAccount)
        if entry.client_id is None or entry.client_secret is None:
            self.settings.require("bandwidth_client_id", "bandwidth_client_secret")

        def build() -> BandwidthClient:
            s = self.settings
            assert entry.client_id is not None
            client = BandwidthClient(
                base_url=s.bandwidth_base_url,
                client_id=entry.client_id,
                client_secret=self._secret(entry.client_secret, "client_secret"),
                token_url=s.bandwidth_token_url,
                connect_timeout=s.http_connect_timeout_seconds,
                read_timeout=s.http_read_timeout_seconds,
                clock=self.clock,
                transport=self.transport,
            )
            self._wire(client.tokens, entry.client_id, 0.0)
            budget_key = entry.account_id if entry.account_id != ANY_ACCOUNT else entry.client_id
            rate = entry.requests_per_second
            self._wire(client, budget_key, s.bandwidth_requests_per_second if rate is None else rate)
            return client

        result: BandwidthClient = self._cached(("bandwidth", entry.account_id), entry, build)
        return result

    def twilio(self, account_sid: str) -> TwilioClient:
        entry = self.entry("twilio", account_sid)
        assert isinstance(entry, TwilioAccount)

        def build() -> TwilioClient:
            s = self.settings
            if entry.api_key_sid is not None:
                user, secret = entry.api_key_sid, self._secret(entry.api_key_secret, "api_key_secret")
            else:
                if entry.auth_token is None:
                    s.require("twilio_auth_token")
                user, secret = entry.account_id, self._secret(entry.auth_token, "auth_token")
            client = TwilioClient(
                base_url=s.twilio_base_url,
                account_sid=entry.account_id,
                username=user,
                secret=secret,
                media_hosts=s.twilio_media_host_patterns,
                connect_timeout=s.http_connect_timeout_seconds,
                read_timeout=s.http_read_timeout_seconds,
                clock=self.clock,
                transport=self.transport,
            )
            rate = entry.requests_per_second
            self._wire(client, entry.account_id, s.twilio_requests_per_second if rate is None else rate)
            return client

        result: TwilioClient = self._cached(("twilio", entry.account_id), entry, build)
        return result

    def _wire(self, client: ProviderHttp, account: str, rate: float) -> None:
        """What every provider client shares: metric counters, in-place retries and the account's
        request budget (when one is configured)."""
        s = self.settings
        client.counters = self._counters
        client.retries, client.retry_backoff = s.http_retries, s.http_retry_backoff_seconds
        if rate > 0 and self._redis is not None:
            client.budget = RateBudget.for_account(
                self._redis,
                client.provider_name,
                account,
                rate,
                burst=s.rate_budget_burst or max(1.0, rate),
                max_wait=s.rate_budget_max_wait_seconds,
            )

    # --- storage ----------------------------------------------------------------------------

    def store(self, provider: str, account_id: str) -> ObjectStore:
        """The account's bucket and prefix (and KMS key), through a client shared by the accounts
        that reach S3 the same way."""
        entry = self.entry(provider, account_id)
        target = entry.storage
        if target.bucket is None:
            if not self.accounts.current().from_file:
                self.settings.require("s3_bucket")
            raise ConfigError(f"{provider} account {account_id}: no bucket (storage.bucket)")

        def build() -> ObjectStore:
            assert target.bucket is not None
            return ObjectStore(
                self._s3_client(target.client_key),
                target.bucket,
                prefix=target.prefix,
                kms_key_id=target.kms_key_id,
            )

        result: ObjectStore = self._cached((f"{provider}-store", entry.account_id), entry, build)
        return result

    def _s3_client(self, key: tuple[Any, ...]) -> S3Client:
        region, endpoint_url, role_arn, external_id, seconds, sts_endpoint_url = key
        client = self._s3.get(key)
        if client is not None:
            return client
        session = None
        if role_arn is not None:  # AssumeRole now, outside the lock (a network call)
            session = assumed_role_session(
                role_arn=role_arn,
                external_id=external_id,
                duration_seconds=seconds,
                region=region,
                sts_endpoint_url=sts_endpoint_url,
                now=self.clock.now,
            )
        made = make_s3_client(region=region, endpoint_url=endpoint_url, session=session)
        with self._lock:
            return self._s3.setdefault(key, made)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
