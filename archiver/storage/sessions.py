"""S3 clients for a customer's bucket reached by assuming a role ("bring your own bucket").

``sts:AssumeRole`` with the customer's external id gives credentials that expire (15 min to 12 h).
botocore's :class:`RefreshableCredentials` holds them and calls AssumeRole again before they expire:
``advisory`` seconds before the end one request refreshes them while the others go on with the old
ones, ``mandatory`` seconds before every request waits for the new ones. Time is read from our clock
(a test advances it to make a session expire mid-run), and the session's length from what STS
answered. An AssumeRole refused (the role's trust policy, a wrong external id) surfaces as a
``ClientError`` on the S3 request that needed it: :func:`archiver.storage.objects.storage_refused`
tells it from an item's problem.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.credentials import RefreshableCredentials
from botocore.session import get_session

__all__ = ["assumed_role_session"]

SESSION_NAME = "archiver"


def assumed_role_session(
    *,
    role_arn: str,
    external_id: str | None,
    duration_seconds: int,
    region: str,
    sts_endpoint_url: str | None,
    now: Callable[[], datetime],
) -> boto3.Session:
    """A boto3 session whose credentials are the role's, renewed before they expire."""
    sts = boto3.client("sts", region_name=region, endpoint_url=sts_endpoint_url)
    advisory = min(300, duration_seconds // 4)

    def fetch() -> dict[str, Any]:
        asked: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": SESSION_NAME,
            "DurationSeconds": duration_seconds,
        }
        if external_id is not None:
            asked["ExternalId"] = external_id
        answered_at = datetime.now(UTC)
        credentials = sts.assume_role(**asked)["Credentials"]
        lifetime = credentials["Expiration"] - answered_at
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            # On our clock: the session lasts what STS said, counted from now.
            "expiry_time": (now() + min(lifetime, timedelta(seconds=duration_seconds))).isoformat(),
        }

    first = fetch()
    credentials = RefreshableCredentials(
        access_key=first["access_key"],
        secret_key=first["secret_key"],
        token=first["token"],
        expiry_time=datetime.fromisoformat(first["expiry_time"]),
        refresh_using=fetch,
        method="sts-assume-role",
        time_fetcher=now,
        advisory_timeout=advisory,
        mandatory_timeout=advisory // 2,
    )
    botocore_session = get_session()
    # botocore has no public setter for a session's credentials object: this private attribute is
    # where its own credential resolver puts them.
    botocore_session._credentials = credentials  # type: ignore[attr-defined]
    return boto3.Session(botocore_session=botocore_session, region_name=region)
