"""Everything a pipeline step needs, built once per process from the settings."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from functools import cached_property
from uuid import uuid4

import redis

from archiver.core.clock import Clock, clock_from_settings
from archiver.core.config import Settings, env_name
from archiver.core.counters import SharedCounters
from archiver.core.rate_budget import RateBudget
from archiver.db.session import Database
from archiver.pipeline.accounts import PausedAccounts
from archiver.pipeline.dispatch import Dispatcher
from archiver.pipeline.retry import RetryPolicy
from archiver.providers.bandwidth import BandwidthClient
from archiver.providers.credentials import SecretSource
from archiver.providers.http import ProviderHttp
from archiver.providers.twilio import TwilioClient
from archiver.storage.objects import ObjectStore, make_s3_client


@dataclass
class PipelineContext:
    settings: Settings
    db: Database
    clock: Clock
    dispatcher: Dispatcher
    _bandwidth: BandwidthClient | None = field(default=None, repr=False)
    _store: ObjectStore | None = field(default=None, repr=False)
    _twilio: TwilioClient | None = field(default=None, repr=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, dispatcher: Dispatcher, *, pre_ping: bool = True
    ) -> PipelineContext:
        """``pre_ping=False``: the database connections are not tested before use (the intake,
        whose writer retries a batch whose connection was lost instead)."""
        return cls(
            settings=settings,
            db=Database(settings.database_url, pre_ping=pre_ping),
            clock=clock_from_settings(settings.clock_offset_file),
            dispatcher=dispatcher,
        )

    @property
    def bandwidth(self) -> BandwidthClient:
        if self._bandwidth is None:
            s = self.settings
            s.require("bandwidth_client_id", "bandwidth_client_secret")
            assert s.bandwidth_client_id is not None and s.bandwidth_client_secret is not None
            self._bandwidth = BandwidthClient(
                base_url=s.bandwidth_base_url,
                client_id=s.bandwidth_client_id,
                client_secret=self.secret("bandwidth_client_secret"),
                token_url=s.bandwidth_token_url,
                connect_timeout=s.http_connect_timeout_seconds,
                read_timeout=s.http_read_timeout_seconds,
                clock=self.clock,
            )
            self._wire(self._bandwidth.tokens, s.bandwidth_client_id, 0.0)
            account = s.bandwidth_account_id or s.bandwidth_client_id
            self._wire(self._bandwidth, account, s.bandwidth_requests_per_second)
        return self._bandwidth

    def secret(self, name: str) -> SecretSource:
        """A secret of the settings, read again from its file (if it came from one) when refused."""
        value = getattr(self.settings, name)
        assert value is not None, name
        return SecretSource(value.get_secret_value(), self.settings.secret_file(name), env_name(name))

    @cached_property
    def _shared_redis(self) -> redis.Redis | None:
        """One client (one connection pool) per process for the rate budgets and the counters."""
        url = self.settings.shared_redis_url
        if url is None:
            return None
        return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    @cached_property
    def shared_counters(self) -> SharedCounters | None:
        """Metric counters every worker adds to (in Redis), for the metrics endpoint."""
        return SharedCounters(self._shared_redis) if self._shared_redis is not None else None

    def _wire(self, client: ProviderHttp, account: str, rate: float) -> None:
        """What every provider client shares: metric counters, in-place retries and the account's
        request budget (when one is configured)."""
        s = self.settings
        client.counters = self.shared_counters
        client.retries, client.retry_backoff = s.http_retries, s.http_retry_backoff_seconds
        if rate > 0 and self._shared_redis is not None:
            client.budget = RateBudget.for_account(
                self._shared_redis,
                client.provider_name,
                account,
                rate,
                burst=s.rate_budget_burst or max(1.0, rate),
                max_wait=s.rate_budget_max_wait_seconds,
            )

    @property
    def twilio(self) -> TwilioClient:
        if self._twilio is None:
            s = self.settings
            s.require("twilio_account_sid")
            if s.twilio_api_key_sid or s.twilio_api_key_secret:
                s.require("twilio_api_key_sid", "twilio_api_key_secret")
                user, secret = s.twilio_api_key_sid, self.secret("twilio_api_key_secret")
            else:
                s.require("twilio_auth_token")
                user, secret = s.twilio_account_sid, self.secret("twilio_auth_token")
            assert s.twilio_account_sid is not None and user is not None
            self._twilio = TwilioClient(
                base_url=s.twilio_base_url,
                account_sid=s.twilio_account_sid,
                username=user,
                secret=secret,
                media_hosts=s.twilio_media_host_patterns,
                connect_timeout=s.http_connect_timeout_seconds,
                read_timeout=s.http_read_timeout_seconds,
                clock=self.clock,
            )
            self._wire(self._twilio, s.twilio_account_sid, s.twilio_requests_per_second)
        return self._twilio

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self.settings.require("s3_bucket")
            assert self.settings.s3_bucket is not None
            client = make_s3_client(
                region=self.settings.s3_region, endpoint_url=self.settings.s3_endpoint_url
            )
            self._store = ObjectStore(client, self.settings.s3_bucket)
        return self._store

    @cached_property
    def paused_accounts(self) -> PausedAccounts:
        """This process's view of the paused provider accounts (a few seconds old at most)."""
        return PausedAccounts()

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(
            max_attempts=s.max_attempts,
            backoff_base=s.retry_backoff_base_seconds,
            backoff_max=s.retry_backoff_max_seconds,
        )

    def new_lease_owner(self) -> str:
        """host:pid:nonce, so an operator (or a test) can tell which process holds an item."""
        return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"

    def close(self) -> None:
        if self._bandwidth is not None:
            self._bandwidth.close()
        if self._twilio is not None:
            self._twilio.close()
        self.db.dispose()
