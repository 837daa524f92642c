"""A process's current registry, read again when its file changes: no restart, no signal.

Every ``ARCHIVER_ACCOUNTS_RELOAD_SECONDS`` (at most; only when someone asks), the registry file and
every secret file it references are looked at (size, modification time, inode: Kubernetes swaps a
mounted ConfigMap or Secret by a symlink, which changes the inode). On a change the file is read
and validated again; a file that no longer validates is refused with an ERROR naming the problem,
and the last good registry stays in use, so a typo never stops a running fleet.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from archiver.accounts.loading import load_registry
from archiver.accounts.registry import Registry, Secret
from archiver.core.config import ConfigError, Settings

__all__ = ["Accounts"]

log = logging.getLogger(__name__)

Stamp = tuple[tuple[str, int, int, int], ...]


def _files(settings: Settings, registry: Registry) -> list[str]:
    paths = [settings.accounts_file] if settings.accounts_file else []
    for account in registry.accounts():
        for value in vars(account).values():
            if isinstance(value, Secret) and value.path is not None:
                paths.append(value.path)
    return paths


def _stamp(paths: list[str]) -> Stamp:
    found = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            found.append((path, -1, -1, -1))
            continue
        found.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(found)


class Accounts:
    """The registry this process serves now (:meth:`current`), and how many times it changed."""

    def __init__(
        self,
        settings: Settings,
        *,
        load: Callable[[Settings], Registry] = load_registry,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._load = load
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._registry = load(settings)  # at start, an invalid file stops the process
        self._stamp = _stamp(_files(settings, self._registry))
        self._looked_at = monotonic()
        #: The last file that did not validate: tried again at every look until it does (a secret
        #: it names may be mounted a moment after the file that names it).
        self._failed: str | None = None
        #: How many times a new registry was taken into use (logs and tests).
        self.generation = 0

    def current(self) -> Registry:
        if self._settings.accounts_file is not None:
            now = self._monotonic()
            if now - self._looked_at >= self._settings.accounts_reload_seconds:
                self.reload_if_changed(now)
        return self._registry

    def reload_if_changed(self, now: float | None = None) -> bool:
        """Read the registry again if its file (or a secret file it names) changed; ``True`` if a
        new registry is now in use."""
        with self._lock:
            self._looked_at = self._monotonic() if now is None else now
            stamp = _stamp(_files(self._settings, self._registry))
            if stamp == self._stamp and self._failed is None:
                return False
            try:
                registry = self._load(self._settings)
            except ConfigError as exc:
                self._stamp = stamp
                if str(exc) != self._failed:  # logged once per problem, not at every look
                    log.error("accounts registry not reloaded, the last good one stays in use: %s", exc)
                self._failed = str(exc)
                return False
            self._failed = None
            before = {(a.provider, a.account_id) for a in self._registry.accounts()}
            after = {(a.provider, a.account_id) for a in registry.accounts()}
            # Stamped as loaded: over what this registry names, taken before it was read would be
            # safer still, but its secret files are only known once it is read; a change made while
            # it was read shows as a change at the next look.
            self._stamp = _stamp(_files(self._settings, registry))
            self._registry = registry
            self.generation += 1
        log.warning(
            "accounts registry reloaded from %s: %d account(s); added %s; removed %s",
            registry.source,
            len(after),
            ", ".join(f"{p}/{a}" for p, a in sorted(after - before)) or "none",
            ", ".join(f"{p}/{a}" for p, a in sorted(before - after)) or "none",
        )
        return True
