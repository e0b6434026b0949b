"""Who gets a look-up at all, how many lists run at once, and one running-job scan for many.

    a command or a Stop click (after the ack, on the lookup pool)
        │
        ▼
    admitted? (RoleChecker.may_stop_any: the roles file, the usergroup cache, Slack)
        │no ──► "no role" (no ModelArts call; no job id, job name or role named)
        │yes
        ▼
    a list? ──no──► the command's own work (stop request, status, history)
        │yes
        ▼
    ListSlots: fewer than per_user of this user's, and fewer than total in all, running?
        │no ──► "busy, try again in a moment"
        │yes
        ▼
    SharedScan: a scan for the same filter running, or finished under share_seconds ago?
        │yes ──► its result            │no ──► scan ModelArts (kept share_seconds)
        ▼                               ▼
    each user's own role filter on top, then the answer; the slot is freed

Slots and scans are counted in this process only (a lock and a dict): with gunicorn each worker
has its own, so a deployment runs up to WEB_CONCURRENCY times the total.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import redis

from bot.core.logs import decision
from bot.flow.roles import RoleChecker

T = TypeVar("T")
Notify = Callable[[str], None]

def unmapped(contact: str) -> str:
    """The refusal of a user who holds no role; ``contact``: who maps users (bot.core.contact)."""
    return ("You have no role in this bot's roles file, so you can't look up or stop jobs. "
            f"Ask {contact} to map you.")
REDIS_DOWN = "I can't reach my state store (Redis) to check your role. Try again shortly."
BUSY = ("I'm running as many job lists as I can right now: busy, try again in a moment. "
        "Nothing was stopped.")


def admitted(roles: RoleChecker, user: str, notify: Notify) -> bool:
    """False (the user told why) for a user who may stop nothing: checked before any ModelArts
    call, so that such a user learns nothing about jobs, not even whether a name exists."""
    try:
        mapped = roles.may_stop_any(user)
    except redis.RedisError:
        notify(REDIS_DOWN)
        return False
    if not mapped:
        decision("denied", user=user, outcome="unmapped")
        notify(unmapped(roles.contact))
    return mapped


def if_admitted(roles: RoleChecker, user: str, notify: Notify,
                work: Callable[..., object], *args: object) -> None:
    """``work(*args)`` for an admitted user; the refusal otherwise."""
    if admitted(roles, user, notify):
        work(*args)


class ListSlots:
    """At most ``per_user`` lists of one user and ``total`` in all at once (in this process)."""

    def __init__(self, per_user: int = 1, total: int = 4) -> None:
        self.per_user = per_user
        self.total = total
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._running = 0

    @contextmanager
    def slot(self, user: str) -> Iterator[bool]:
        """True inside when a slot was taken (freed on the way out); False when busy."""
        with self._lock:
            took = self._running < self.total and self._users.get(user, 0) < self.per_user
            if took:
                self._running += 1
                self._users[user] = self._users.get(user, 0) + 1
        try:
            yield took
        finally:
            if took:
                self._free(user)

    def _free(self, user: str) -> None:
        with self._lock:
            self._running -= 1
            left = self._users[user] - 1
            if left:
                self._users[user] = left
            else:
                del self._users[user]


@dataclass
class _Scan(Generic[T]):
    future: Future = field(default_factory=Future)
    finished: float | None = None        # time.monotonic() when done; None while running


class SharedScan(Generic[T]):
    """``get(key)``: ``scan(key)`` once for all the callers that come while it runs or within
    ``seconds`` after it ended. A scan that raised, or whose result ``reusable`` refuses (a
    source that failed), is not kept: the next caller scans again."""

    def __init__(self, scan: Callable[[object], T], seconds: float,
                 reusable: Callable[[T], bool] = lambda _: True) -> None:
        self.scan = scan
        self.seconds = seconds
        self.reusable = reusable
        self._lock = threading.Lock()
        self._scans: dict[object, _Scan[T]] = {}

    def get(self, key: object) -> T:
        with self._lock:
            now = time.monotonic()
            self._scans = {k: s for k, s in self._scans.items() if self._fresh(s, now)}
            shared = self._scans.get(key)
            if shared is None:
                mine = self._scans[key] = _Scan()
        if shared is not None:
            return shared.future.result()
        try:
            result = self.scan(key)
        except BaseException as exc:
            self._end(key, mine, keep=False)
            mine.future.set_exception(exc)
            raise
        self._end(key, mine, keep=self.reusable(result))
        mine.future.set_result(result)
        return result

    def _fresh(self, scan: _Scan[T], now: float) -> bool:
        return scan.finished is None or now - scan.finished < self.seconds

    def _end(self, key: object, scan: _Scan[T], keep: bool) -> None:
        with self._lock:
            scan.finished = time.monotonic()
            if not keep and self._scans.get(key) is scan:
                del self._scans[key]
