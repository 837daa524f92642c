"""``archiver flower``: Flower, started only behind real credentials.

Flower's API can send tasks to the workers, so it never runs open: it needs ``FLOWER_BASIC_AUTH``
(``user:password``, several separated by commas; or ``FLOWER_BASIC_AUTH_FILE`` naming a file holding
it), refuses a placeholder or a short password, and listens on 127.0.0.1 unless told otherwise
(put a TLS proxy in front to reach it from elsewhere). Only a loopback Flower may run without
credentials, for the local stack (``--local-unauthenticated``). Then it execs ``celery -A workers
flower`` with the options that keep its memory bounded."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from archiver.core.exposure import is_loopback, is_placeholder

__all__ = ["FLOWER_OPTIONS", "FlowerRefused", "basic_auth", "flower_argv"]

#: Flower's memory stays bounded over months: at most this many tasks and workers are kept, and
#: the state is not persisted (the database is the record; Flower is a live view).
FLOWER_OPTIONS = (
    "--max_tasks=10000",
    "--max_workers=50",
    "--persistent=False",
    "--purge_offline_workers=600",
    "--tasks_columns=name,uuid,state,kwargs,args,received,started,runtime,retries,worker",
)

#: The shortest password accepted.
MIN_PASSWORD_LENGTH = 12


class FlowerRefused(Exception):
    """Flower would run with no or weak credentials; the message says what to set."""


def basic_auth(env: Mapping[str, str]) -> str:
    """The ``user:password[,user:password]`` Flower is to require, checked."""
    value = env.get("FLOWER_BASIC_AUTH", "")
    path = env.get("FLOWER_BASIC_AUTH_FILE")
    if path:
        if value:
            raise FlowerRefused("set FLOWER_BASIC_AUTH or FLOWER_BASIC_AUTH_FILE, not both")
        try:
            value = Path(path).read_text("utf-8").strip()
        except OSError as exc:
            raise FlowerRefused(
                f"FLOWER_BASIC_AUTH_FILE: cannot read {path!r}: {exc.strerror or exc}"
            ) from None
    if not value:
        raise FlowerRefused(
            "FLOWER_BASIC_AUTH (user:password) is not set: Flower's API can send tasks to the workers, "
            "it never runs without credentials (set it in the environment file, or FLOWER_BASIC_AUTH_FILE)"
        )
    for pair in value.split(","):
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise FlowerRefused("FLOWER_BASIC_AUTH must be user:password (several separated by commas)")
        if is_placeholder(password) or is_placeholder(user + ":" + password):
            raise FlowerRefused(
                f"FLOWER_BASIC_AUTH: the password of {user!r} is a placeholder; set a real one"
            )
        if len(password) < MIN_PASSWORD_LENGTH:
            raise FlowerRefused(
                f"FLOWER_BASIC_AUTH: {user!r}'s password is shorter than {MIN_PASSWORD_LENGTH} characters"
            )
    return value


def flower_argv(address: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    celery = (
        shutil.which("celery", path=os.path.dirname(sys.executable)) or shutil.which("celery") or "celery"
    )
    return [
        celery,
        "-A",
        "workers",
        "flower",
        f"--address={address}",
        f"--port={port}",
        *FLOWER_OPTIONS,
        *extra,
    ]


def run(address: str, port: int, extra: Sequence[str], *, local_unauthenticated: bool = False) -> int:
    """Check, then replace this process with Flower (its signals and exit code are Flower's)."""
    env = dict(os.environ)
    env.pop("FLOWER_BASIC_AUTH_FILE", None)
    try:
        if local_unauthenticated:
            if not is_loopback(address):
                raise FlowerRefused("--local-unauthenticated only on a loopback address (127.0.0.1)")
            env.pop("FLOWER_BASIC_AUTH", None)
            env["FLOWER_UNAUTHENTICATED_API"] = "true"
        else:
            env["FLOWER_BASIC_AUTH"] = basic_auth(os.environ)
    except FlowerRefused as exc:
        print(f"archiver flower: {exc}", file=sys.stderr)
        return 2
    argv = flower_argv(address, port, extra)
    os.execve(argv[0], argv, env)  # noqa: S606 - our own argv, no shell
    return 0  # not reached
