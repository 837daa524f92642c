"""Benchmark: stream recording media of 64 MiB, 256 MiB and 1 GiB from the simulator.

Reports download throughput and the simulator process's resident memory (VmRSS before, VmHWM peak
after each size). The simulator must not build media in memory: the peak should stay flat.

    .venv/bin/python -m bench.simulator_media
"""

from __future__ import annotations

import time

import httpx

from bench.results import write_section
from bench.scratch import standalone_simulator

SIZES_MIB = (64, 256, 1024)
WAV_STEREO_BYTES_PER_SECOND = 8000 * 2 * 2


def proc_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    rows = []
    with standalone_simulator() as sim:
        url, admin = sim.url, sim.admin
        # uvicorn runs the app in the simulator's own process: sim.process.pid is the server.
        baseline = proc_kib(sim.process.pid, "VmRSS")
        for mib in SIZES_MIB:
            duration = (mib * 2**20 - 44) / WAV_STEREO_BYTES_PER_SECOND
            [rec] = admin.post(
                "/admin/recordings",
                json={"count": 1, "duration": duration, "channels": 2, "file_format": "wav"},
            ).json()["created"]
            media = f"{url}/api/v2/accounts/{rec['accountId']}/calls/{rec['callId']}/recordings/{rec['recordingId']}/media"
            received = 0
            started = time.perf_counter()
            with httpx.stream("GET", media, headers=sim.bearer(), timeout=120) as response:
                declared = int(response.headers["content-length"])
                for chunk in response.iter_bytes(1024 * 1024):
                    received += len(chunk)
            elapsed = time.perf_counter() - started
            assert received == declared == rec["size"], (received, declared, rec["size"])
            peak = proc_kib(sim.process.pid, "VmHWM")
            rows.append((mib, received, elapsed, received / elapsed / 2**20, peak / 1024))
            print(
                f"{mib:>5} MiB: {received / elapsed / 2**20:7.1f} MiB/s, simulator peak RSS {peak / 1024:6.1f} MiB"
            )
    table = ["| media | bytes | seconds | throughput | simulator peak RSS (VmHWM) |", "|---|---|---|---|---|"]
    table += [f"| {m} MiB WAV | {b} | {s:.2f} | {t:.0f} MiB/s | {p:.1f} MiB |" for m, b, s, t, p in rows]
    growth = rows[-1][4] - rows[0][4]
    body = "\n".join(table) + (
        f"\n\nSimulator RSS before the downloads: {baseline / 1024:.1f} MiB. Peak growth from 64 MiB to 1 GiB: "
        f"{growth:+.1f} MiB (target: flat, well under 100 MiB). The client is httpx in one process on the same machine."
    )
    write_section("simulator media streaming", "python -m bench.simulator_media", body)


if __name__ == "__main__":
    main()
