"""Benchmark: real-time transcriptions archived and deleted end to end per second by the pipeline
(intake, PostgreSQL, Redis, one worker with two processes), as a ratio of a plain asyncio script
doing the same provider and S3 calls at the same concurrency without a queue or a database.
Target (issue 8): >= 0.5.

Per transcription both do: GET it from the simulator, PUT it to S3 with its SHA-256, read it back
(one GetObject), check it again before the deletion (one HeadObject), DELETE it at the simulator.
The pipeline also stores the event, the item, its history and its segments, and runs one task
(the archive, which goes straight on to the deletion).

    .venv/bin/python -m bench.small_items
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import statistics
import time
from typing import Any

import boto3
import httpx

from archiver.db.session import Database
from archiver.local.devstack import LOCAL_AWS, LocalStack
from bench.rate_limit_efficiency import deletions_requested
from bench.results import write_section
from bench.scratch import bandwidth_token, running_stack, scratch_database

ITEMS = 400
CONCURRENCY = 2
RUNS = 3


async def plain_script(stack: LocalStack, created: list[dict[str, Any]]) -> float:
    """The same calls, CONCURRENCY at a time, nothing else."""
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.s3_url,
        region_name="us-east-1",
        aws_access_key_id=LOCAL_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS["AWS_SECRET_ACCESS_KEY"],
    )
    api = f"{stack.simulator_url}/api/v2/accounts/{stack.account_id}"
    # One token for the whole run, fetched before the clock starts: as a worker process keeps its own.
    token = bandwidth_token(
        f"{stack.simulator_url}/api/v1/oauth2/token", stack.client_id, stack.client_secret
    )
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for t in created:
        queue.put_nowait(t)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                t = queue.get_nowait()
                url = f"{api}/calls/{t['callId']}/transcriptions/{t['transcriptionId']}"
                body = (await client.get(url)).raise_for_status().content
                digest = hashlib.sha256(body).digest()
                key = f"plain/{t['transcriptionId']}.json"
                await asyncio.to_thread(
                    s3.put_object, Bucket=stack.bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(digest).decode(), Metadata={"sha256": digest.hex()},
                )  # fmt: skip
                got = await asyncio.to_thread(
                    s3.get_object, Bucket=stack.bucket, Key=key, ChecksumMode="ENABLED"
                )
                assert hashlib.sha256(got["Body"].read()).digest() == digest
                await asyncio.to_thread(s3.head_object, Bucket=stack.bucket, Key=key, ChecksumMode="ENABLED")
                (await client.delete(url)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - started


def pipeline_run(admin: httpx.Client, db: Database) -> float:
    """Seconds from the first webhook sent to the last item's deletion requested."""
    created = admin.post("/admin/realtime-transcriptions", json={"count": ITEMS}).json()["created"]
    ids = [t["transcriptionId"] for t in created]  # new ones: the simulator's ids never repeat
    already = deletions_requested(db)
    started = time.perf_counter()
    admin.post("/admin/webhooks", json={"event": "available", "ids": ids}).raise_for_status()
    while (done := deletions_requested(db) - already) < ITEMS:
        if time.perf_counter() - started > 600:
            raise AssertionError(f"only {done} of {ITEMS} done")
        time.sleep(0.2)
    return time.perf_counter() - started


def plain_run(stack: LocalStack, admin: httpx.Client) -> float:
    created = admin.post("/admin/realtime-transcriptions", json={"count": ITEMS}).json()["created"]
    return asyncio.run(plain_script(stack, created))


def main() -> None:
    env = {"ARCHIVER_LOG_LEVEL": "WARNING", "ARCHIVER_SWEEP_INTERVAL_SECONDS": "5"}
    runs: list[tuple[float, float]] = []
    with (
        scratch_database() as url,
        running_stack(url, env, worker_processes=CONCURRENCY) as stack,
        stack.admin() as admin,
    ):
        db = Database(url)
        for _ in range(RUNS):  # alternated, so that both see the same machine
            runs.append((plain_run(stack, admin), pipeline_run(admin, db)))
        db.dispose()
    ratios = [plain / pipeline for plain, pipeline in runs]
    plain, pipeline = (statistics.median(r[k] for r in runs) for k in (0, 1))
    ratio = statistics.median(ratios)
    print(
        f"plain {ITEMS / plain:.1f}/s, pipeline {ITEMS / pipeline:.1f}/s: median ratio {ratio:.2f} {ratios}"
    )
    write_section(
        "Small items end to end",
        ".venv/bin/python -m bench.small_items",
        f"""
{ITEMS} real-time transcriptions, each fetched, stored in S3 (moto), read back, checked again and
deleted at the simulator; concurrency {CONCURRENCY} on both sides; {RUNS} runs of each, alternated.

| | items/s (median) | seconds (median) |
|---|---|---|
| plain asyncio script (no queue, no database) | {ITEMS / plain:.1f} | {plain:.1f} |
| pipeline: webhooks, intake, PostgreSQL, Redis, worker with {CONCURRENCY} processes | {ITEMS / pipeline:.1f} | {pipeline:.1f} |

Ratio: median {ratio:.2f} (each run: {", ".join(f"{r:.2f}" for r in ratios)}); target >= 0.5.
The pipeline's time runs from the first webhook sent to the last item's deletion requested.
Both sides reach Bandwidth's API with an OAuth 2.0 bearer token: the script fetches one before its
clock starts; each worker process keeps its own (one token request per process per lifetime).
""",
    )


if __name__ == "__main__":
    main()
