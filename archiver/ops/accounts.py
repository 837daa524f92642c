"""``archiver accounts``: the accounts served, their state, and a check of each one's credentials
and bucket, as an operator asks before (and after) adding a customer.

A check proves, for one account, what the pipeline will need of it:

* **credentials**: Bandwidth: a new token and the cheapest authenticated request on the account;
  Twilio: one transcript of the list;
* **bucket**: a probe object written under the account's prefix (with its KMS key, if it has one),
  read back and verified (SSE-KMS with that key included), then deleted; the role assumed first,
  if the account reaches its bucket by one;
* **object lock**: the bucket's Object Lock configuration, required when the account says
  ``object_lock = true``;
* **state**: active, or paused and why (the same words as ``archiver status``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from archiver.accounts import ANY_ACCOUNT, Account, BandwidthAccount
from archiver.db.models import ArchiveItem, ProviderAccount
from archiver.pipeline.accounts import describe_pause
from archiver.pipeline.context import PipelineContext
from archiver.storage.objects import storage_refused

__all__ = ["AccountCheck", "check_accounts", "list_accounts"]


def _states(
    ctx: PipelineContext,
) -> tuple[dict[tuple[str, str], ProviderAccount], dict[tuple[str, str], dict[str, int]]]:
    with ctx.db.sessionmaker() as session:
        rows = {(r.provider, r.account_id): r for r in session.scalars(select(ProviderAccount))}
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for provider, account_id, state, n in session.execute(
            select(ArchiveItem.provider, ArchiveItem.account_id, ArchiveItem.state, func.count()).group_by(
                ArchiveItem.provider, ArchiveItem.account_id, ArchiveItem.state
            )
        ):
            counts.setdefault((provider, account_id), {})[state] = int(n)
    return rows, counts


def _state(row: ProviderAccount | None, served: bool) -> dict[str, Any]:
    if row is not None and row.state == "paused":
        return {
            "state": "paused",
            "why": f"{describe_pause(row.provider, row.pause_reason)} since "
            f"{row.paused_since.isoformat(timespec='seconds') if row.paused_since else '?'}",
            "message": row.message,
            "next_check": row.check_at.isoformat(timespec="seconds") if row.check_at else None,
        }
    return {"state": "active" if served else "removed (not in the registry)"}


def _describe(account: Account) -> dict[str, Any]:
    target = account.storage
    return {
        "provider": account.provider,
        "account_id": "any" if account.account_id == ANY_ACCOUNT else account.account_id,
        "credential": account.client_id
        if isinstance(account, BandwidthAccount)
        else (account.api_key_sid or account.account_id),
        "bucket": target.bucket,
        "prefix": target.prefix,
        "role": target.role_arn,
        "kms_key": target.kms_key_id,
        "object_lock": target.object_lock,
        "deletion_policy": account.deletion_policy,
    }


def list_accounts(ctx: PipelineContext) -> dict[str, Any]:
    """Every account of the registry, and every account the database still holds items of."""
    registry = ctx.accounts.current()
    rows, counts = _states(ctx)
    listed = []
    seen: set[tuple[str, str]] = set()
    for account in registry.accounts():
        mine: tuple[str, str] = (account.provider, account.account_id)
        seen.add(mine)
        listed.append({**_describe(account), **_state(rows.get(mine), True), "items": counts.get(mine, {})})
    for key in sorted(set(counts) | set(rows)):
        if key not in seen and not (key[0] == "bandwidth" and ANY_ACCOUNT in registry.bandwidth):
            provider, account_id = key
            listed.append(
                {"provider": provider, "account_id": account_id, **_state(rows.get(key), False),
                 "items": counts.get(key, {})}
            )  # fmt: skip
    return {"source": registry.source, "accounts": listed}


@dataclass
class AccountCheck:
    provider: str
    account_id: str
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append({"check": name, "ok": ok, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "account_id": self.account_id,
            "ok": self.ok,
            "checks": self.checks,
        }


def _credentials(ctx: PipelineContext, account: Account, result: AccountCheck) -> None:
    try:
        if isinstance(account, BandwidthAccount):
            client = ctx.bandwidth_for(account.account_id)
            if account.account_id == ANY_ACCOUNT:
                client.tokens.forget()
                client.tokens.current()
                result.add("credentials", True, f"token issued to {account.client_id} (no account named)")
                return
            client.check_credentials(account.account_id)
            result.add("credentials", True, f"token issued to {account.client_id}; account answered")
        else:
            ctx.twilio_for(account.account_id).check_credentials()
            result.add("credentials", True, f"{account.api_key_sid or account.account_id} accepted")
    except Exception as exc:
        result.add("credentials", False, f"{type(exc).__name__}: {exc}")


def _bucket(ctx: PipelineContext, account: Account, result: AccountCheck) -> None:
    target = account.storage
    try:
        store = ctx.store_for(account.provider, account.account_id)
        key = store.check_writable()
        how = f" (role {target.role_arn})" if target.role_arn else ""
        kms = f", SSE-KMS with {target.kms_key_id} verified" if target.kms_key_id else ""
        result.add("bucket", True, f"s3://{store.bucket}/{key} written, read back and deleted{how}{kms}")
    except Exception as exc:
        refused = storage_refused(exc)
        result.add("bucket", False, refused or f"{type(exc).__name__}: {exc}")
        return
    try:
        lock = store.object_lock()
    except Exception as exc:
        result.add("object lock", not target.object_lock, f"not readable: {storage_refused(exc) or exc}")
        return
    if target.object_lock:
        result.add("object lock", lock is not None, lock or "required (object_lock = true) but not enabled")
    else:
        result.add("object lock", True, lock or "not enabled (not required)")


def check_accounts(ctx: PipelineContext, wanted: str | None = None) -> list[AccountCheck]:
    """Check every account (or those whose id, or ``provider/id``, is ``wanted``)."""
    rows, _counts = _states(ctx)
    results = []
    for account in ctx.accounts.current().accounts():
        if wanted not in (None, account.account_id, f"{account.provider}/{account.account_id}"):
            continue
        result = AccountCheck(account.provider, account.account_id)
        _credentials(ctx, account, result)
        _bucket(ctx, account, result)
        state = _state(rows.get((account.provider, account.account_id)), True)
        result.add("state", state["state"] == "active", state.get("why") or state["state"])
        results.append(result)
    return results
