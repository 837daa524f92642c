"""Everything a pipeline step needs, built once per process from the settings: the database, the
clock, the dispatcher, and each account's clients and storage (:mod:`archiver.pipeline.tenants`)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from functools import cached_property
from uuid import uuid4

import redis

from archiver.accounts import ANY_ACCOUNT, Accounts
from archiver.core.clock import Clock, clock_from_settings
from archiver.core.config import ConfigError, Settings
from archiver.core.counters import SharedCounters
from archiver.db.session import Database
from archiver.pipeline.accounts import PausedAccounts
from archiver.pipeline.dispatch import Dispatcher
from archiver.pipeline.retry import RetryPolicy
from archiver.pipeline.tenants import AccountClients
from archiver.providers.bandwidth import BandwidthClient
from archiver.providers.twilio import TwilioClient
from archiver.storage.objects import ObjectStore, make_s3_client


@dataclass
class PipelineContext:
    settings: Settings
    db: Database
    clock: Clock
    dispatcher: Dispatcher
    _store: ObjectStore | None = field(default=None, repr=False)

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

    @cached_property
    def accounts(self) -> Accounts:
        """The accounts served, read again when the registry file changes."""
        return Accounts(self.settings)

    @cached_property
    def tenants(self) -> AccountClients:
        """Each account's provider clients and storage target."""
        return AccountClients(
            self.settings, self.accounts, self.clock, self.shared_counters, self._shared_redis
        )

    def bandwidth_for(self, account_id: str) -> BandwidthClient:
        return self.tenants.bandwidth(account_id)

    def twilio_for(self, account_sid: str) -> TwilioClient:
        return self.tenants.twilio(account_sid)

    def store_for(self, provider: str, account_id: str) -> ObjectStore:
        return self.tenants.store(provider, account_id)

    def _only(self, provider: str) -> str:
        named = self.accounts.current().named(provider)
        if named is None:
            return ANY_ACCOUNT
        if len(named) != 1:
            raise ConfigError(f"{len(named)} {provider} accounts are served here: name the account")
        return named[0]

    @property
    def bandwidth(self) -> BandwidthClient:
        """The Bandwidth client of the only Bandwidth account (the single-account case)."""
        return self.bandwidth_for(self._only("bandwidth"))

    @property
    def twilio(self) -> TwilioClient:
        """The Twilio client of the only Twilio account (the single-account case)."""
        return self.twilio_for(self._only("twilio"))

    @property
    def store(self) -> ObjectStore:
        """The archive of the single-account environment (``ARCHIVER_S3_*``)."""
        if self.accounts.current().accounts():
            first = self.accounts.current().accounts()[0]
            return self.store_for(first.provider, first.account_id)
        self.settings.require("s3_bucket")
        assert self.settings.s3_bucket is not None
        if self._store is None:
            client = make_s3_client(
                region=self.settings.s3_region, endpoint_url=self.settings.s3_endpoint_url
            )
            self._store = ObjectStore(client, self.settings.s3_bucket, prefix=self.settings.s3_prefix)
        return self._store

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
        if "tenants" in self.__dict__:
            self.tenants.close()
        self.db.dispose()
