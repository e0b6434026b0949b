"""Count the Redis round trips the bot makes, from MONITOR on the throwaway Redis.

MONITOR shows each command a client sends, and separately (``[0 lua]``) the commands a script
runs inside Redis: only the former count. Scripts are named by their SHA1, so background polling
(the alert dispatcher's ``DUE``) is told apart from a stop flow's steps. A pipeline is several
commands in one round trip, which MONITOR does not show: round trips are counted as the reads
Redis made from clients (INFO ``total_reads_processed``) less the background commands (one read
each) and the closing INFO's own read.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import socket
import threading
import time
from collections import Counter

LINE = re.compile(r'^\+(\d+\.\d+) \[\d+ ([^\]]+)\] (.*)$')
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
# The dispatcher looking for due channels, and the owed-replies recovery and the watches looking
# for due entries (one CLAIM script): each polls on a timer in every worker, flow or no flow.
BACKGROUND = {"EVALSHA queue.DUE", "EVALSHA outcomes.CLAIM"}
# A stop's follow-through after its reply (bot.flow.watches): counted apart from the flow.
FOLLOW_UP = "EVALSHA watches."
OWN = "ZCARD {flow}"   # the benchmark waiting for the watches to end (bench.perf.phases)
MODULES = ("bot.flow.confirmations", "bot.flow.outcomes", "bot.flow.watches", "bot.alerts.queue",
           "bot.modelarts.auth")


def script_names() -> dict[str, str]:
    """SHA1 -> ``module.NAME`` for every Lua script constant of the bot's Redis modules."""
    names = {}
    for dotted in MODULES:
        try:
            module = importlib.import_module(dotted)
        except ImportError:
            continue
        holders = [module, *(v for v in vars(module).values() if isinstance(v, type))]
        for holder in holders:
            for key, value in vars(holder).items():
                if key.isupper() and isinstance(value, str) and "redis.call" in value:
                    sha = hashlib.sha1(value.encode()).hexdigest()  # noqa: S324 - Redis's id
                    names.setdefault(sha, f"{dotted.rsplit('.', 1)[1]}.{key}")
    return names


NAMES = script_names()


def label(args: list[str], prefix: str) -> str:
    """``EVALSHA CONSUME``, ``SET confirm``, ``MGET usergroup``...: command and key kind."""
    name = args[0].upper()
    if name in ("EVALSHA", "EVAL") and len(args) > 1:
        return f"{name} {NAMES.get(args[1], args[1][:8])}"
    if len(args) > 1 and args[1].startswith(prefix):
        return f"{name} {args[1][len(prefix):].split(':')[0]}"
    return name


class Monitor:
    """Records every client command between ``start()`` and ``stop()``."""

    def __init__(self, port: int, prefix: str) -> None:
        self.port = port
        self.prefix = prefix
        self.seen: list[tuple[float, str]] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import redis

        self._info = redis.Redis(port=self.port)
        self._info.ping()          # connect (and its handshake) before the first count
        self._sock = socket.create_connection(("127.0.0.1", self.port))
        self._sock.sendall(b"MONITOR\r\n")
        self._file = self._sock.makefile("rb")
        assert self._file.readline().startswith(b"+OK")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(0.05)       # MONITOR is live before the count starts
        self.since = time.time()
        self.reads_before = self._reads()

    def _read(self) -> None:
        try:
            for raw in self._file:
                got = LINE.match(raw.decode(errors="replace").rstrip("\r\n"))
                if got and got.group(2) != "lua":
                    self.seen.append((float(got.group(1)), label(ARG.findall(got.group(3)),
                                                                   self.prefix)))
        except (OSError, ValueError):
            return

    def _reads(self) -> int:
        return int(self._info.info("stats")["total_reads_processed"])

    def stop(self) -> tuple[Counter, int]:
        """Commands by kind, and the reads (round trips) Redis made meanwhile, this one's off."""
        reads = self._reads() - self.reads_before - 1
        until = time.time()
        time.sleep(0.05)   # let the last lines arrive
        assert self._sock
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        if self._thread:
            self._thread.join(2)
        self._info.close()
        # Only what Redis ran between the two counts (its clock is this machine's).
        return Counter(name for at, name in self.seen if self.since <= at <= until), reads


def per_flow(counted: tuple[Counter, int], flows: int, seconds: float) -> dict:
    """Commands per flow by kind and round trips per flow, background polling and the watches'
    follow-through (each one command, one round trip) set apart."""
    counts, reads = counted
    reads -= counts.get(OWN, 0)
    steps = {k: round(v / flows, 2) for k, v in sorted(counts.items())
             if k not in BACKGROUND and not k.startswith(FOLLOW_UP) and k not in ("INFO", OWN)}
    follow = {k: round(v / flows, 2) for k, v in sorted(counts.items())
              if k.startswith(FOLLOW_UP)}
    background = sum(v for k, v in counts.items() if k in BACKGROUND)
    return {"commands_per_flow": steps,
            "commands_total_per_flow": round(sum(steps.values()), 2),
            "total_per_flow": round((reads - background - sum(follow.values()) * flows) / flows,
                                    2),
            "follow_up_per_flow": follow,
            "background_per_second": round(background / seconds, 1) if seconds else None}
