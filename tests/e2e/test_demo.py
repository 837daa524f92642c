"""The README's first command, on embedded defaults: SQLite, a local S3 server, the simulator; two
Bandwidth accounts and one Twilio account from a registry, into two buckets."""

from __future__ import annotations

import os
import subprocess

from archiver.local.supervisor import bin_path
from tests.support.stack import test_redis_url


def test_demo_archives_deletes_and_confirms_purges_on_sqlite(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env["ARCHIVER_BROKER_URL"] = test_redis_url("demo")
    result = subprocess.run(
        [bin_path("archiver"), "demo", "--transcriptions", "6", "--recordings", "2", "--exit-when-done", "--timeout", "120",
         "--workdir", str(tmp_path / "demo")],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    assert "everything archived, verified, deleted at the provider, purge confirmed" in out
    assert "purged                      9" in out  # 6 transcriptions, 2 recordings, 1 Twilio transcript
    assert "rejected                    1" in out
    # Three accounts from the registry, into two buckets, each with its own credentials.
    assert "Items by account:" in out
    for account in ("bandwidth/9900001", "bandwidth/9900002", "twilio/AC" + "d" * 32):
        assert account in out
    assert "s3://archiver-demo/" in out and "s3://archiver-demo-two/" in out
    for label in ("[s3]", "[simulator]", "[intake]", "[worker]", "[beat]", "[flower]"):
        assert label in out  # logs interleaved and labelled
    assert "Flower (tasks, queues, workers): http://127.0.0.1:" in out and "archiver status" in out
    assert (tmp_path / "demo" / "archiver.db").exists()
