"""Benchmark: archive one recording of 64 MiB, 256 MiB and 1 GiB from the simulator into the S3
server, against plain boto3 ``upload_fileobj`` of the same HTTP stream into the same server.

Each side runs in its own child process, so that its peak RSS (VmHWM) is its own. The pipeline side
is the real archive step (``run_step(ARCHIVE)``: metadata; media hashed, spooled, checked and stored
with one PutObject carrying its SHA-256; verified by HeadObject; rows committed in SQLite). It runs
twice per round: with the default settings (spooled), and with spooling turned off
(``ARCHIVER_MEDIA_SPOOL_MAX_BYTES=0``: parts uploaded as the download goes on, full-object CRC32).

    .venv/bin/python -m bench.media_archive
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

SIZES_MIB = (64, 256, 1024)
REPEATS = 3
WAV_STEREO_BYTES_PER_SECOND = 8000 * 2 * 2


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class HttpReader:
    """A file-like ``read(n)`` over an httpx byte stream, for upload_fileobj."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_raw(1024 * 1024)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def child_boto3(env: dict[str, str], rec: dict[str, Any]) -> dict[str, Any]:
    import boto3

    from bench.scratch import bandwidth_token

    client = boto3.client("s3", endpoint_url=env["ARCHIVER_S3_ENDPOINT_URL"], region_name="us-east-1")
    url = (f"{env['ARCHIVER_BANDWIDTH_BASE_URL']}/accounts/{rec['accountId']}/calls/{rec['callId']}"
           f"/recordings/{rec['recordingId']}/media")  # fmt: skip
    secret = Path(env["ARCHIVER_BANDWIDTH_CLIENT_SECRET_FILE"]).read_text().strip()
    token = bandwidth_token(env["ARCHIVER_BANDWIDTH_TOKEN_URL"], env["ARCHIVER_BANDWIDTH_CLIENT_ID"], secret)
    started = time.perf_counter()
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=300) as response:
        client.upload_fileobj(
            HttpReader(response),  # type: ignore[arg-type]  # a file-like reader, as boto3 takes
            env["ARCHIVER_S3_BUCKET"],
            f"baseline/{rec['recordingId']}",
        )
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "peak_rss_mib": peak_rss_mib()}


def child_pipeline(env: dict[str, str], rec: dict[str, Any]) -> dict[str, Any]:
    from archiver.core.config import load_settings
    from archiver.intake.bandwidth import parse_bandwidth_event
    from archiver.pipeline.dispatch import Step
    from archiver.pipeline.events import record_event
    from archiver.pipeline.steps import Outcome, run_step
    from workers.wiring import build_context

    class NoDispatch:
        def enqueue(self, *_args: object) -> None:  # the benchmark runs the step itself
            pass

        def enqueue_many(self, *_args: object) -> None:
            pass

        def relay(self, *_args: object) -> None:
            pass

        def enqueue_backfill(self, run_id: int) -> None:
            pass

        def backlog(self) -> dict[str, int] | None:
            return None

    settings = load_settings()  # the database is migrated by the parent: a worker never imports alembic
    ctx = build_context(settings, dispatcher=NoDispatch())
    event = {"eventType": "recordingAvailable", "eventTime": "2026-11-21T00:00:00Z", "accountId": rec["accountId"],
             "callId": rec["callId"], "recordingId": rec["recordingId"], "status": "complete"}  # fmt: skip
    _, item_id = record_event(ctx, parse_bandwidth_event(json.dumps(event).encode()))
    assert item_id is not None
    ctx.store, ctx.bandwidth  # noqa: B018  # made before the clock starts, as boto3's client is (a worker keeps them)
    started = time.perf_counter()
    result = run_step(ctx, Step.ARCHIVE, item_id)
    elapsed = time.perf_counter() - started
    assert result.outcome is Outcome.DONE, result
    return {"seconds": elapsed, "peak_rss_mib": peak_rss_mib()}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median duration, with the highest peak RSS seen over all runs."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[len(ordered) // 2], "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}


def clear_bucket(stack: Any) -> None:
    client = stack.object_store().client
    for obj in client.list_objects_v2(Bucket=stack.bucket).get("Contents", []):
        client.delete_object(Bucket=stack.bucket, Key=obj["Key"])


def run_child(kind: str, env: dict[str, str], rec: dict[str, Any], **settings: str) -> dict[str, Any]:
    from archiver.db.migrate import upgrade

    database = tempfile.NamedTemporaryFile(suffix=".db", delete=False)  # a fresh database per run
    database.close()
    child_env = {**os.environ, **env, **settings, "ARCHIVER_DATABASE_URL": f"sqlite:///{database.name}"}
    try:
        upgrade(child_env["ARCHIVER_DATABASE_URL"])
        out = subprocess.run([sys.executable, "-m", "bench.media_archive", kind, json.dumps(rec)],
                             env=child_env, capture_output=True, text=True, check=True)  # fmt: skip
    finally:
        os.unlink(database.name)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


#: The three sides of each round: plain boto3, the pipeline as configured by default (spooled), and
#: the pipeline with spooling turned off (parts uploaded as the download goes on).
SIDES = {
    "boto3": ("child-boto3", {}),
    "spooled": ("child-pipeline", {}),
    "parts": ("child-pipeline", {"ARCHIVER_MEDIA_SPOOL_MAX_BYTES": "0"}),
}


def main() -> None:
    from archiver.local.devstack import LocalStack
    from bench.results import write_section

    workdir = Path(tempfile.mkdtemp(prefix="bench-media-"))
    stack = LocalStack(workdir=workdir, database_url=f"sqlite:///{workdir}/bench.db", broker_url="redis://127.0.0.1:1/0",
                       bucket="bench-media")  # fmt: skip
    rows = []
    try:
        stack.start_s3()
        stack.start_simulator()
        env = stack.env()
        with stack.admin() as admin:
            for mib in SIZES_MIB:
                duration = (mib * 2**20 - 44) / WAV_STEREO_BYTES_PER_SECOND
                rec = admin.post("/admin/recordings", json={"count": 1, "duration": duration, "channels": 2,
                                                            "file_format": "wav", "with_transcription": False}).json()["created"][0]  # fmt: skip
                runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
                for _ in range(REPEATS):  # alternate the sides; the machine's load varies
                    for side, (kind, settings) in SIDES.items():
                        runs[side].append(run_child(kind, env, rec, **settings))
                    clear_bucket(stack)
                medians = {side: median_run(each) for side, each in runs.items()}
                ratios = {
                    side: sorted(
                        b["seconds"] / p["seconds"] for b, p in zip(runs["boto3"], runs[side], strict=True)
                    )
                    for side in ("spooled", "parts")
                }
                rows.append((mib, medians, ratios))
                b, sp, pa = medians["boto3"], medians["spooled"], medians["parts"]
                print(f"{mib:>5} MiB (median of {REPEATS}): boto3 {mib / b['seconds']:6.1f} MiB/s ({b['peak_rss_mib']:.0f} MiB RSS), "
                      f"spooled {mib / sp['seconds']:6.1f} MiB/s ({sp['peak_rss_mib']:.0f} MiB RSS, ratio {b['seconds'] / sp['seconds']:.2f}), "
                      f"parts {mib / pa['seconds']:6.1f} MiB/s ({pa['peak_rss_mib']:.0f} MiB RSS, ratio {b['seconds'] / pa['seconds']:.2f})")  # fmt: skip
    finally:
        stack.stop()

    def cell(mib: int, run: dict[str, Any]) -> str:
        return f"{mib / run['seconds']:.0f} MiB/s ({run['seconds']:.2f} s)"

    def ratio_cell(medians: dict[str, dict[str, Any]], side: str, each: list[float]) -> str:
        ratio = medians["boto3"]["seconds"] / medians[side]["seconds"]
        return f"{ratio:.2f} ({', '.join(f'{x:.2f}' for x in each)})"

    table = ["| recording | plain boto3 upload_fileobj | pipeline, spooled (default) | ratio (each run's) | boto3 peak RSS | pipeline peak RSS (max of runs) | pipeline, spooling off (in parts) | ratio (each run's) | its peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for mib, m, r in rows:
        table.append(f"| {mib} MiB WAV | {cell(mib, m['boto3'])} | {cell(mib, m['spooled'])} | {ratio_cell(m, 'spooled', r['spooled'])} | "
                     f"{m['boto3']['peak_rss_mib']:.0f} MiB | {m['spooled']['peak_rss_mib']:.0f} MiB | {cell(mib, m['parts'])} | "
                     f"{ratio_cell(m, 'parts', r['parts'])} | {m['parts']['peak_rss_mib']:.0f} MiB |")  # fmt: skip
    worst = min(m["boto3"]["seconds"] / m["spooled"]["seconds"] for _, m, _ in rows)
    peaks = [m["spooled"]["peak_rss_mib"] for _, m, _ in rows]
    body = "\n".join(table) + (
        f"\n\nMedians of {REPEATS} rounds; each round runs the three sides one after the other, each in a fresh "
        f"child process. Targets: ratio ≥ 0.7 (worst median here {worst:.2f}); pipeline peak RSS ≤ 150 MiB and flat "
        f"(here {min(peaks):.0f} to {max(peaks):.0f} MiB). All sides read the same simulator stream and write to the "
        "same moto S3 server. The pipeline also reads the recording's metadata, hashes (SHA-256), validates the WAV "
        "header, verifies with HeadObject and commits to SQLite; its database is migrated beforehand by the parent, "
        "as a worker's is by `archiver migrate`, so alembic is not in the measured memory.\n\n"
        "Spooled (the default for media up to `ARCHIVER_MEDIA_SPOOL_MAX_BYTES`, 5 GiB): the download goes to an "
        "unlinked temporary file while hashed, then, checked, to S3 in one PutObject whose full-object checksum is "
        "the SHA-256. It uses disk, not memory: as much as the recording, freed when the step ends. In parts "
        "(spooling off, or longer media): parts are uploaded while the download goes on, and completed with a "
        "full-object CRC32; moto implements that completion by copying the whole object twice more and "
        "re-computing the CRC (measured here before 2026-11-22 at 5 to 11 s per GiB), which real S3 does as parts "
        "arrive, so against moto the in-parts column is the slower one. Where the spooled side falls short, at "
        "1 GiB, the time is moto's too: it takes one PutObject on one thread, reading the whole body into "
        "memory and then computing its MD5 ETag in one pass (py-spy on moto, 2026-11-22: 44 % of its samples "
        "in the MD5, 41 % reading the body), where boto3's parts are handled by several threads at once; and "
        "the download cannot overlap an upload whose checksum header needs the whole body's SHA-256."
    )
    write_section("media archive (recordings)", "python -m bench.media_archive", body)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("child-boto3", "child-pipeline"):
        runner = child_boto3 if sys.argv[1] == "child-boto3" else child_pipeline
        print(json.dumps(runner(dict(os.environ), json.loads(sys.argv[2]))))
    else:
        main()
