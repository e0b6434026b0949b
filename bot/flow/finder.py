"""Find running jobs without their ids: ``/modelarts list``, and stop or status by name.

Every source of every project (bot.modelarts.fleet: v2 ``training-job-searches`` per workspace,
phases Creating, Pending, Running, the first page saying how many match and the other pages
fetched concurrently; the v1 job list, status RUNNING) is read at the same time. A source that
fails is named in the answer and never hides the others' jobs. Each job is then checked against
the roles file exactly as a stop is (``RoleChecker.check``), with the usergroup cache read in one
MGET for the whole list.

A name never widens what a user may do: one running job of that name goes into
``StopFlow.request`` (status check and role check on the job found), a list entry's button
leads there again on click.

Who may look at all is decided before any of this (bot/flow/admission.py): an unmapped user
never reaches the Finder. A list takes one of the ``ListSlots`` (else "busy, try again in a
moment") and reads the running jobs through a ``SharedScan``: lists that arrive while a scan
for the same server-side filter runs, or within ``share_seconds`` after it, take its result,
each filtered by its own pattern and its own user's roles.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis

from bot.core.errors import InvalidIdError
from bot.flow import lists
from bot.flow.admission import BUSY, ListSlots, SharedScan
from bot.flow.stop import StopFlow
from bot.modelarts.fleet import Source
from bot.modelarts.models import RUNNING, STOPPABLE_PHASES, Failure, Job, v1_retired
from bot.modelarts.refs import DEFAULT, JobRef

log = logging.getLogger(__name__)

Notify = Callable[[str], None]
Show = Callable[[str, list[dict]], None]      # an ephemeral answer with blocks

V2_PAGE = 50          # the largest page training-job-searches gives
V2_MAX_PAGES = 40     # 2,000 running v2 jobs read at most
V1_PAGE = 200
V1_MAX_PAGES = 5      # 1,000 running v1 jobs read at most
STATUS_PAGES = 2      # status by name, when none runs: the newest 100 jobs with the name in it
SHOWN_BY_STATUS = 3
WORKERS = 6
SOURCE_WORKERS = 12   # sources read at once: 4 projects x (v2 in 2 workspaces, v1)
REDIS_DOWN = "I can't reach my state store (Redis) to check your roles. Try again shortly."


@dataclass(frozen=True)
class NameFilter:
    """Which names: a part of the name (any case), a glob with ``*``/``?`` (any case), or
    exactly one name. ``hint`` is what the servers may filter on (a name part)."""

    text: str
    exact: bool = False

    @property
    def glob(self) -> bool:
        return not self.exact and any(c in self.text for c in "*?")

    @property
    def hint(self) -> str | None:
        if not self.glob:
            return self.text
        parts = [p for p in re.split(r"[*?]+", self.text) if p]
        return max(parts, key=len) if parts else None

    def matches(self, name: str) -> bool:
        if self.exact:
            return name == self.text
        if self.glob:
            return fnmatch.fnmatchcase(name.lower(), self.text.lower())
        return self.text.lower() in name.lower()


@dataclass
class Found:
    """Jobs read from the sources (newest first), and what could not be read (by source)."""

    jobs: list[Job] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    partial: bool = False
    sources: int = 2

    @property
    def problems(self) -> list[str]:
        return [lists.source_problem(api, f) for api, f in self.failures.items()]

    @property
    def doubts(self) -> list[str]:
        """The problems that may hide a job: all but a v1 API that does not exist here (404
        APIGW.0101, a region where old-version training is retired)."""
        return [lists.source_problem(api, f) for api, f in self.failures.items()
                if not (api.endswith("v1") and v1_retired(f))]

    @property
    def failed(self) -> bool:
        """True when no source gave anything."""
        return not self.jobs and len(self.failures) >= self.sources


class Finder:
    def __init__(self, flow: StopFlow, pool: ThreadPoolExecutor | None = None, *,
                 slots: ListSlots | None = None, share_seconds: float = 5.0) -> None:
        """``slots``: the bound on lists at once; ``share_seconds``: how long a finished scan
        of the running jobs serves the lists that come after it."""
        self.flow = flow
        self.modelarts = flow.modelarts
        self.roles = flow.roles
        self.pool = pool or ThreadPoolExecutor(WORKERS, thread_name_prefix="finder")
        # One thread per source read at once (each waits on its pages, which run on ``pool``).
        self.sources_pool = ThreadPoolExecutor(SOURCE_WORKERS, thread_name_prefix="sources")
        self.slots = slots or ListSlots()
        self.shared: SharedScan[Found] = SharedScan(self._scan, share_seconds,
                                                    reusable=lambda found: not found.doubts)

    # -- /modelarts list [pattern] ----------------------------------------------------------
    def listing(self, user: str, pattern: str | None, show: Show, notify: Notify) -> None:
        """For an admitted user (bot.flow.admission): the caller checked."""
        with self.slots.slot(user) as took:
            if not took:
                notify(BUSY)
                return
            names = NameFilter(pattern) if pattern else None
            found = _narrowed(self.shared.get(names.hint if names else None), names)
            if found.failed:
                notify("I could not list jobs: " + "; ".join(found.problems))
                return
            split = self._split(user, found.jobs, notify)
        if split is not None:
            show(*lists.list_message(*split, pattern, found.problems, found.partial,
                                     self._locked(split[0]), self.roles.contact))

    # -- /modelarts stop <name>, /modelarts status <name> -----------------------------------
    def stop(self, user: str, channel: str, name: str, notify: Notify, show: Show,
             reason: str = "", project: str | None = None) -> None:
        """``reason``: kept with the request when the name is one running job (several: the
        choice's Stop buttons carry none). ``project``: look in that project only."""
        got = self._named_running(name, notify, project)
        if got is None:
            return
        found, exact = got
        if len(exact) == 1:
            for problem in found.doubts:
                notify(f"Only part of ModelArts was searched: {problem}")
            self.flow.request(user, channel, exact[0].ref, notify, reason=reason)
            return
        self._choices(user, name, exact, found, notify, show)

    def status(self, user: str, name: str, notify: Notify, show: Show,
               project: str | None = None) -> None:
        got = self._named_running(name, notify, project)
        if got is None:
            return
        found, exact = got
        if len(exact) == 1:
            self.flow.status(user, exact[0].ref, notify)
            return
        if not exact:
            ended = self.named(name, project)
            if ended.jobs:
                shown = ended.jobs[:SHOWN_BY_STATUS]
                why = self.flow.why_ended(shown[0]) if len(shown) == 1 else []
                notify(lists.not_running_text(name, shown, ended.problems, why))
                return
        self._choices(user, name, exact, found, notify, show)

    def _named_running(self, name: str, notify: Notify,
                       project: str | None = None) -> tuple[Found, list[Job]] | None:
        """The running jobs whose names contain ``name``, and those named exactly ``name``;
        None (user told) when no source could be read, or the project is unknown."""
        if project is not None and project not in self.modelarts.names and (
                self.modelarts.several or project != DEFAULT):
            notify(f"There is no project `{project}` here; the projects are "
                   f"{', '.join(f'`{n}`' for n in self.modelarts.names)}.")
            return None
        if project is not None and not self.modelarts.several:
            project = None
        found = self.running(NameFilter(name), project)
        if found.failed:
            notify("I could not look for the job: " + "; ".join(found.problems))
            return None
        return found, [job for job in found.jobs if job.name == name]

    def _choices(self, user: str, name: str, exact: list[Job], found: Found, notify: Notify,
                 show: Show) -> None:
        """Several running jobs of this name (the list of them), or none (similar names)."""
        if exact:
            split = self._split(user, exact, notify)
            if split is not None:
                show(*lists.several_message(name, *split, found.problems,
                                            self._locked(split[0]), self.roles.contact))
            return
        split = self._split(user, found.jobs, notify)
        if split is not None:
            show(*lists.not_found_message(name, *split, found.problems,
                                          self._locked(split[0]), self.roles.contact))

    def _locked(self, jobs: list[Job]) -> frozenset[str]:
        """The keys of the jobs among ``jobs`` that the roles file protects (marked in lists)."""
        rules = self.roles.roles
        return frozenset(job.ref.key for job in jobs
                         if rules.protection(job.name, job.ref.project))

    # -- reading both sources ---------------------------------------------------------------
    def running(self, names: NameFilter | None = None, project: str | None = None) -> Found:
        """Running jobs whose names pass ``names``, from every source at once, newest first."""
        return _narrowed(self._scan(names.hint if names else None, project), names)

    def _scan(self, hint: str | None, project: str | None = None) -> Found:
        """Running jobs whose names contain ``hint`` (the servers filter), newest first; of
        ``project`` only when given."""
        found = self._read(STOPPABLE_PHASES, RUNNING, hint, V2_MAX_PAGES, V1_MAX_PAGES, None,
                           project)
        # The servers filter by phase and status too (which keys they honour is UNCONFIRMED for
        # v2): a job that is not stoppable is never listed, whatever they send.
        found.jobs = [job for job in found.jobs if job.stoppable]
        return found

    def named(self, name: str, project: str | None = None) -> Found:
        """Jobs of any phase or status whose name is ``name`` (the newest few), for status."""
        return self._read((), None, name, STATUS_PAGES, 1, NameFilter(name, exact=True), project)

    def _read(self, phases: tuple[str, ...], status: int | None, hint: str | None,
              v2_pages: int, v1_pages: int, names: NameFilter | None,
              project: str | None) -> Found:
        """Every source at once (the fleet's pool runs them, this pool their pages)."""
        sources = self.modelarts.sources(project)
        reads = [self.sources_pool.submit(
            self._v2_search, src, phases, hint, v2_pages) if src.api == "v2" else
            self.sources_pool.submit(self._v1_list, src, status, hint, v1_pages)
            for src in sources]
        return _merge([(src.label, read.result()) for src, read in
                       zip(sources, reads, strict=True)], names)

    def _v2_search(self, src: Source, phases: tuple[str, ...], hint: str | None,
                   max_pages: int) -> tuple[list[Job], Failure | None, bool]:
        client, ws = src.client, src.workspace
        first = client.search_jobs(phases, hint, 0, V2_PAGE, ws)
        if isinstance(first, Failure):
            return [], first, False
        pages = min(-(-first.count // V2_PAGE), max_pages)
        rest = list(self.pool.map(lambda page: client.search_jobs(
            phases, hint, page, V2_PAGE, ws), range(1, pages)))
        jobs: list[Job] = list(first.items)
        for page in rest:
            if isinstance(page, Failure):
                return jobs, page, True
            jobs += page.items
        return jobs, None, first.count > pages * V2_PAGE

    def _v1_list(self, src: Source, status: int | None, hint: str | None,
                 max_pages: int) -> tuple[list[Job], Failure | None, bool]:
        jobs: list[Job] = []
        for page in range(1, max_pages + 1):
            got = src.client.list_jobs(V1_PAGE, page, status, hint)
            if isinstance(got, Failure):
                return jobs, got, False
            jobs += got.items
            if page * V1_PAGE >= got.count:
                return jobs, None, False
        return jobs, None, True

    # -- the role filter --------------------------------------------------------------------
    def _split(self, user: str, jobs: list[Job], notify: Notify) -> tuple[list[Job], int] | None:
        """(the jobs the user may stop, how many others), or None (user told why)."""
        try:
            allowed = self.allowed(user, jobs)
        except redis.RedisError:
            notify(REDIS_DOWN)
            return None
        return allowed, len(jobs) - len(allowed)

    def allowed(self, user: str, jobs: list[Job]) -> list[Job]:
        """The jobs ``user`` may stop. One MGET of the usergroup cache for all of them, and one
        check per distinct set of roles allowing a job (the verdict depends on nothing else)."""
        fetched = self._group_cache()
        verdicts: dict[tuple[str, ...], bool] = {}
        out = []
        for job in jobs:
            project = job.ref.project
            allowing = tuple(self.roles.roles.roles_allowing(job.name, project))
            if allowing not in verdicts:
                verdicts[allowing] = self.roles.check(user, job.name, fetched,
                                                      project=project).allowed
            if verdicts[allowing]:
                out.append(job)
        return out

    def _group_cache(self) -> dict[str, bytes | None] | None:
        groups = list(self.roles.roles.usergroups)
        if not groups or not self.roles.cache_seconds:
            return None
        keys = [self.roles.keys.usergroup(g) for g in groups]
        return dict(zip(keys, self.roles.redis.mget(keys), strict=True))


def _narrowed(found: Found, names: NameFilter | None) -> Found:
    """The jobs of ``found`` that pass ``names``, in a Found of their own (``found`` may be
    shared with other lists: never changed)."""
    jobs = found.jobs if names is None else [job for job in found.jobs if names.matches(job.name)]
    return Found(list(jobs), dict(found.failures), found.partial, found.sources)


def _merge(reads: list[tuple[str, tuple[list[Job], Failure | None, bool]]],
           names: NameFilter | None) -> Found:
    found = Found(sources=len(reads))
    seen = set()
    for label, (jobs, failure, partial) in reads:
        if failure is not None:
            log.warning("%s job list failed: %s", label, failure.error_code)
            found.failures[label] = failure
        found.partial = found.partial or partial
        for job in jobs:
            ref = _ref(job)
            if ref is not None and ref not in seen and (names is None or names.matches(job.name)):
                seen.add(ref)
                found.jobs.append(job)
    found.jobs.sort(key=lambda job: job.create_time_ms or 0, reverse=True)
    return found


def _ref(job: Job) -> JobRef | None:
    """The job's ref, or None for an id ModelArts should never send (it could not be stopped)."""
    try:
        return job.ref
    except InvalidIdError:
        return None
