"""The Home tab: gathered for one user, published with ``views.publish``.

    app_home_opened (tab "home") ──▶ remember the user's DM channel (the event's, in Redis)
        ──▶ build ──▶ views.publish
    the outcome of a stop the user asked for (StopFlow.report), a Stop pressed on the Home tab
        ──▶ refresh(user): on this module's own pool, at most one queued per user; only for a
        user whose DM channel is remembered (who opened the tab within DM_DAYS)

    build: admitted? (RoleChecker.may_stop_any; the same check as every command)
        │no ──▶ "You are in no role: ask the platform team." (no ModelArts call, no job named)
        │yes
        ▼
    roles held (one MGET of the usergroup cache) · the running jobs (Finder.shared: the scan
    ``/modelarts list`` without a filter takes, so a Home tab opened while a list runs, or
    within LIST_SHARE_SECONDS after it, costs no ModelArts call) filtered by the user's roles
    (Finder.allowed, one MGET) · every open request (one HGETALL of the claims hash, O(open
    requests of all users), kept to the user's) · the user's last 10 audit entries (XREVRANGE,
    200 entries first: Audit.newest_of) ──▶ bot.flow.home_view

A Home tab takes no list slot (bot.flow.admission.ListSlots): every Home tab reads the one
unfiltered scan, which SharedScan runs once at a time per process whatever the number of
openings, and the lookup pool bounds the threads. A job whose request is "stopping" is left
out of the entries: the scan may be a few seconds older than the stop, and its Stop would only
answer "already being stopped".

A Stop pressed on the Home tab sends no channel (the click comes from a view): the
confirmation goes to the user's direct messages with the bot, the channel of their
app_home_opened event, which the view carries in its ``private_metadata``
(home_view.metadata; bot/slack/listeners/actions.py reads it back).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis

from bot.core.keys import Keys
from bot.core.slack_out import Answer, SlackOut
from bot.flow import home_view as hv
from bot.flow.audit import Audit, Entry
from bot.flow.claims import Claims
from bot.flow.finder import Finder, Found
from bot.modelarts.models import Job

log = logging.getLogger(__name__)

DM_DAYS = 30    # how long a user's DM channel is remembered after they opened the Home tab


class Home:
    def __init__(self, finder: Finder, claims: Claims, audit: Audit, slack: SlackOut,
                 client: redis.Redis, prefix: str, *, workers: int = 2) -> None:
        self.finder = finder
        self.roles = finder.roles
        self.claims = claims
        self.audit = audit
        self.slack = slack
        self.redis = client
        self.keys = Keys(prefix)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="home")
        self._lock = threading.Lock()
        self._wanted: set[str] = set()     # users whose tab is to be published again
        self._running: set[str] = set()    # users whose refreshes run now (one at a time)

    # -- the event, and the refreshes --------------------------------------------------------
    def opened(self, user: str, dm: str | None) -> Answer:
        """app_home_opened for the Home tab (after the ack): remember ``dm``, publish."""
        if hv.is_dm(dm):
            try:
                self.redis.set(self.keys.home_dm(user), dm, ex=DM_DAYS * 86400)
            except redis.RedisError:
                log.warning("could not remember the DM channel of a Home tab")
        else:
            dm = None
        return self.publish(user, dm)

    def refresh(self, user: str) -> None:
        """Publish ``user``'s Home tab again, later, on this pool (never raises, never waits).
        One user's refreshes run one at a time, and those asked for meanwhile make one more:
        the last one published reads the newest state."""
        with self._lock:
            if user in self._wanted:
                return
            self._wanted.add(user)
            if user in self._running:
                return
            self._running.add(user)
        self.pool.submit(self._drain, user)

    def _drain(self, user: str) -> None:
        while True:
            with self._lock:
                if user not in self._wanted:
                    self._running.discard(user)
                    return
                self._wanted.discard(user)
            self._refresh(user)

    def _refresh(self, user: str) -> None:
        try:
            raw = self.redis.get(self.keys.home_dm(user))
        except redis.RedisError:
            log.warning("could not read the DM channel of a Home tab; not refreshed")
            return
        if raw is None:
            return     # no Home tab opened lately: nothing on screen to refresh
        try:
            self.publish(user, raw.decode() if isinstance(raw, bytes) else raw)
        except Exception:  # noqa: BLE001 - a refresh on its own pool: logged, never lost quietly
            log.exception("the Home tab refresh failed")

    def publish(self, user: str, dm: str | None) -> Answer:
        return self.slack.call("views.publish", extra={"user": user}, user_id=user,
                               view=self.view(user, dm))

    # -- what the tab shows -------------------------------------------------------------------
    def view(self, user: str, dm: str | None) -> dict:
        try:
            if not self.roles.may_stop_any(user):
                return hv.unmapped(dm, self.roles.contact)
            seen = hv.Seen(user, self.roles.held(user), dict(self.roles.roles.jobs))
        except redis.RedisError:
            return hv.unavailable(dm)
        stopping = self._requests(seen)
        names = self._jobs(seen, stopping)
        seen.decisions = self._decisions(user)
        self._name_requests(seen, names)
        return hv.home(seen, dm)

    def _jobs(self, seen: hv.Seen, stopping: set[str]) -> dict[str, Job]:
        """The running jobs into ``seen``; returns every running job read, by key."""
        found: Found = self.finder.shared.get(None)     # shared: never changed here
        if found.failed:
            seen.jobs_note = "I could not list jobs: " + "; ".join(found.problems)
            return {}
        try:
            allowed = self.finder.allowed(seen.user, list(found.jobs))
        except redis.RedisError:
            seen.jobs_note = ("I can't reach my state store (Redis) to check your roles, so "
                              "no job is listed. Open this tab again in a moment.")
            return {}
        shown = [job for job in allowed if job.ref.key not in stopping]
        seen.jobs, seen.hidden = shown, len(found.jobs) - len(allowed)
        seen.stopping = len(allowed) - len(shown)
        seen.locked = self.finder._locked(shown)   # the list's :lock: marks
        seen.partial, seen.problems = found.partial, found.problems
        return {job.ref.key: job for job in found.jobs}

    def _requests(self, seen: hv.Seen) -> set[str]:
        """The user's open requests into ``seen``; returns the keys of every job being stopped
        (anyone's request), which the entries leave out."""
        try:
            live = self.claims.live(time.time())
        except redis.RedisError:
            log.warning("could not read the open requests for a Home tab")
            return set()
        seen.requests = [hv.Request(key, claim, until) for key, (claim, until) in live.items()
                         if claim.requester == seen.user]
        return {key for key, (claim, _) in live.items() if claim.state == "stopping"}

    def _decisions(self, user: str) -> list[Entry]:
        try:
            return self.audit.newest_of(user, hv.LAST_DECISIONS)
        except redis.RedisError:
            log.warning("could not read the audit trail for a Home tab")
            return []

    def _name_requests(self, seen: hv.Seen, jobs: dict[str, Job]) -> None:
        """Each request's job name: from the running jobs read, else the "requested" entry of
        its confirmation among the decisions read (no extra call)."""
        by_confirmation = {e.get("confirmation"): e.get("job_name") for e in seen.decisions
                           if e.get("job_name")}
        named = []
        for r in seen.requests:
            job = jobs.get(r.key)
            name = job.name if job else by_confirmation.get(r.claim.id, "")
            named.append(hv.Request(r.key, r.claim, r.until, name))
        seen.requests = named

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
