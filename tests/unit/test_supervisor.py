"""The local supervisor restarts a process that exits unasked, as systemd and Kubernetes do, and
never one that was stopped."""

from __future__ import annotations

import os
import signal
import time

from archiver.local.supervisor import ManagedProcess, wait_until


def test_a_process_that_dies_is_started_again_and_a_stopped_one_is_not(tmp_path):
    log = tmp_path / "sleeper.log"
    process = ManagedProcess("sleeper", ["sleep", "60"], log_path=log, restart=True).start()
    try:
        first = process.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: process.restarts == [-signal.SIGKILL] and process.alive(), 10, "the restart")
        assert process.pid != first
        assert "[supervisor] sleeper exited with -9; starting it again" in log.read_text()
    finally:
        process.stop()
    time.sleep(2)  # longer than the restart delay
    assert not process.alive() and process.restarts == [-signal.SIGKILL]


def test_without_restart_an_exit_is_left_as_it_is(tmp_path):
    process = ManagedProcess("sleeper", ["sleep", "60"], log_path=tmp_path / "sleeper.log").start()
    os.kill(process.pid, signal.SIGKILL)
    time.sleep(2)
    assert not process.alive() and process.restarts == []
    process.stop()
