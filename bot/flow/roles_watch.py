"""The roles file, re-read while the bot runs: a revoked user is refused within seconds, with no
restart, and a broken file never replaces a good one.

One check (``check``), every POLL_SECONDS in a thread of each worker, and at once on SIGHUP
(``request``; under gunicorn the master relays it to every worker, bot.app.serve)::

    read ROLES_FILE, following symlinks (a ConfigMap update swaps ``..data`` to a new directory:
    the path now leads to the new file, whole)
      ├─ cannot read it ─────────────────────────────▶ REFUSED
      ├─ its sha256 is the one in use ───────────────▶ nothing (a touch, the same text again)
      ├─ its sha256 was refused last time ───────────▶ nothing (one line per bad file), unless
      │                                                 SIGHUP asked
      ├─ does not parse (bot.flow.roles.parse_roles) ▶ REFUSED
      └─ parses ─────────────────────────────────────▶ LOADED: ``apply(roles)``
    REFUSED: the reason logged (an error), modelarts_bot_roles_reloads_refused_total + 1, and the
             roles in use kept
    LOADED:  one reference assignment (RoleChecker.use), so a check in flight sees the old file
             or the new one, whole; logged, and modelarts_bot_roles_loaded{sha256} = load time

The content is hashed at each poll (a few KB: microseconds), so no change escapes, whatever the
file's mtime or inode do. From the file changing to a revoked user refused: at most POLL_SECONDS
and a parse. (Kubernetes adds its own delay before it swaps a ConfigMap volume: the kubelet's
sync, up to about a minute; that part happens before the file changes.)

The gunicorn master keeps a watch too, polled from its main loop, so that a worker it starts later
begins with the latest good file even when the file on disk has gone bad since.
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.core import metrics
from bot.core.errors import ConfigError
from bot.flow.roles import Roles, parse_roles_bytes, read_roles_file

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Loaded:
    """A roles file in use: what it says, the sha256 of its bytes, and when it was loaded."""

    roles: Roles
    sha256: str
    at: float   # epoch seconds


def read(path: str) -> tuple[bytes, str]:
    """The file's bytes and their sha256; ConfigError when it cannot be read."""
    data = read_roles_file(path)
    return data, hashlib.sha256(data).hexdigest()


def parse(path: str, data: bytes, sha256: str) -> Loaded:
    """``data`` parsed as a roles file; ConfigError says where it is wrong."""
    return Loaded(parse_roles_bytes(data, path), sha256, time.time())


def load(path: str) -> Loaded:
    """The roles file, read and parsed (start-up: ConfigError stops the bot)."""
    return parse(path, *read(path))


class RolesWatch:
    def __init__(self, path: str, loaded: Loaded, apply: Callable[[Roles], None] | None = None,
                 *, every: float = POLL_SECONDS, record: bool = True, quiet: bool = False) -> None:
        """``apply(roles)``: put a new file in use (RoleChecker.use). ``record``: keep the
        metrics; ``quiet``: loads and refusals at debug level (the gunicorn master: no metrics,
        quiet, since it serves nothing and its workers tell)."""
        self.path = path
        self.loaded = loaded
        self.apply = apply
        self.every = every
        self.record = record
        self.quiet = quiet
        self.refused: str | None = None   # the last refused file's sha256, or read error
        self.last_check = time.monotonic()
        self._forced = False
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._pipe: tuple[int, int] | None = None

    # -- one check --------------------------------------------------------------------------
    def check(self, forced: bool = False) -> str:
        """Read the file and act on it: "unchanged", "loaded" or "refused". ``forced``
        (SIGHUP): a file refused before is tried (and reported) again."""
        self.last_check = time.monotonic()
        try:
            data, sha = read(self.path)
        except ConfigError as exc:
            return self._refuse(exc, str(exc), forced)
        if sha == self.loaded.sha256:
            self.refused = None
            return "unchanged"
        try:
            new = parse(self.path, data, sha)
        except ConfigError as exc:
            return self._refuse(exc, sha, forced)
        old, self.loaded, self.refused = self.loaded, new, None
        if self.apply:
            self.apply(new.roles)
        if self.record:
            metrics.roles_loaded(new.sha256, new.at, replaced=old.sha256)
        log.log(logging.DEBUG if self.quiet else logging.INFO,
                "roles file reloaded: %s (sha256 %s, %d users, %d usergroups)", self.path,
                new.sha256[:12], len(new.roles.users), len(new.roles.usergroups),
                extra={"sha256": new.sha256, "replaced": old.sha256, "pid": os.getpid()})
        return "loaded"

    def _refuse(self, exc: ConfigError, what: str, forced: bool) -> str:
        """``what``: the refused file's sha256, or the read error: each is reported once (again
        on SIGHUP), not at every poll."""
        if what == self.refused and not forced:
            return "unchanged"
        self.refused = what
        if self.record:
            metrics.roles_refused()
        log.log(logging.DEBUG if self.quiet else logging.ERROR,
                "roles file refused, keeping the one in use (sha256 %s): %s",
                self.loaded.sha256[:12], exc,
                extra={"sha256": self.loaded.sha256, "pid": os.getpid()})
        return "refused"

    def due(self) -> bool:
        """True when the last check is POLL_SECONDS old (the gunicorn master's loop asks)."""
        return time.monotonic() - self.last_check >= self.every

    # -- the thread: one per worker ---------------------------------------------------------
    def request(self) -> None:
        """Check now, a refused file included (SIGHUP). Safe in a signal handler: no lock, one
        write to a pipe the thread waits on."""
        self._forced = True
        if self._pipe:
            try:
                os.write(self._pipe[1], b"!")
            except OSError:   # full (a check is coming anyway) or closed (stopping)
                pass

    def start(self) -> None:
        """Record the file in use and check every ``every`` seconds (at once first)."""
        if self._thread:
            return
        if self.record:
            metrics.roles_loaded(self.loaded.sha256, self.loaded.at)
        self._pipe = os.pipe()
        for fd in self._pipe:
            os.set_blocking(fd, False)
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="roles-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        self.request()
        if self._thread:
            self._thread.join(timeout)
            if not self._thread.is_alive() and self._pipe:
                pipe, self._pipe = self._pipe, None
                for fd in pipe:
                    os.close(fd)
        self._thread = None

    def _run(self) -> None:
        wake = self._pipe[0] if self._pipe else None
        while wake is not None and not self._halt.is_set():
            forced, self._forced = self._forced, False
            try:
                self.check(forced)
            except Exception:  # noqa: BLE001 - the watch must outlive a bug
                log.exception("roles file: unexpected error")
            if select.select([wake], [], [], self.every)[0]:
                try:
                    os.read(wake, 64)
                except OSError:
                    pass
