"""Writing a benchmark's latest result into bench/RESULTS.md (one section per benchmark)."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = (
    "# Benchmark results\n\nEach section is the last run of one benchmark, written by the benchmark itself.\n"
)


def machine() -> str:
    cpus = os.cpu_count()
    try:
        mem_kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
        memory = f"{mem_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        memory = "?"
    return f"{platform.machine()}, {cpus} CPUs, {memory} RAM, Python {platform.python_version()}, {platform.system()}"


def write_section(name: str, command: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = (
        f"{start}\n## {name}\n\n- date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}\n- machine: {machine()}\n"
        f"- command: `{command}`\n\n{body.strip()}\n{end}"
    )
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
