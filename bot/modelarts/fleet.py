"""Several ModelArts projects, regions and workspaces behind one interface: the ``Fleet``.

    MODELARTS_PROJECTS unset ──▶ one project, ``default`` (MODELARTS_ENDPOINT and
        MODELARTS_PROJECT_ID), searched without a workspace filter: as before projects existed
    MODELARTS_PROJECTS set ──▶ one ``ModelArtsClient`` per entry (its endpoint, its project id, its
        token with IAM), each v2 search once per listed workspace (default: ``"0"``)

``Fleet.lookup``, ``Fleet.stop`` and ``Fleet.events`` are what the flow calls, as it called one
client before; ``Fleet.link`` is a ref's console page (bot.modelarts.console). A ref
of a named project goes to that project's client. A ``DEFAULT`` ref (a bare id, an alert naming no
project, a button made before the upgrade) goes to the one project when there is one; with
several, every project is asked at once, and the job is the one exactly one project knows
(several: a failure that names the qualified forms, never a guess). A stop of such a ref looks it
up first, so the terminate goes to the project that holds the job.

``Fleet.sources`` are the listing's sources (bot.flow.finder): per project, v2 per workspace and
v1, each named so a failure can say which.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bot.core.errors import InvalidIdError
from bot.core.projects import Project
from bot.modelarts.models import Failure, Job, JobEvent, StopOutcome
from bot.modelarts.refs import DEFAULT, JobRef

UNKNOWN_PROJECT = "BOT.UNKNOWN_PROJECT"
AMBIGUOUS = "BOT.AMBIGUOUS"
NOT_FOUND_CODES = {"ModelArts.2775", "ModelArts.0104", "ModelArts.2614", "BOT.NOT_FOUND"}


@dataclass(frozen=True)
class Source:
    """One place the listing reads: a project's v2 search in one workspace, or its v1 list."""

    label: str                  # "v2", "bj4 v2", "bj4 v2 workspace 1a2b…", "bj4 v1"
    client: object              # a ModelArtsClient
    api: str                    # "v2" | "v1"
    workspace: str | None = None


class Fleet:
    """Every configured project's client; the flow's one ModelArts (see the module docstring)."""

    def __init__(self, clients: dict[str, object], projects: tuple[Project, ...]) -> None:
        self.clients = clients
        self.projects = projects
        self._pool = ThreadPoolExecutor(max(2, min(len(clients), 16)),
                                        thread_name_prefix="projects")

    @property
    def several(self) -> bool:
        return len(self.clients) > 1

    @property
    def names(self) -> list[str]:
        return list(self.clients)

    def client(self, name: str):
        return self.clients.get(name)

    def sources(self, only: str | None = None) -> list[Source]:
        """The listing's sources, of project ``only`` when given."""
        out = []
        for p in self.projects:
            if only is not None and p.name != only:
                continue
            client, lead = self.clients[p.name], f"{p.name} " if self.several else ""
            for ws in p.workspaces or (None,):
                tail = f" workspace {ws[:8]}…" if ws not in (None, "0") else ""
                out.append(Source(f"{lead}v2{tail}", client, "v2", ws))
            out.append(Source(f"{lead}v1", client, "v1"))
        return out

    # -- the flow's interface ----------------------------------------------------------------
    def lookup(self, ref: JobRef) -> Job | Failure:
        client = self._direct(ref)
        if client is not None:
            return client.lookup(ref)
        if ref.project != DEFAULT:
            return unknown_project(ref.project, self.names)
        return self._locate(ref)

    def stop(self, ref: JobRef) -> StopOutcome:
        client = self._direct(ref)
        if client is None and ref.project != DEFAULT:
            return StopOutcome.from_failure(unknown_project(ref.project, self.names))
        if client is None:      # a DEFAULT ref with several projects: where is it?
            found = self._locate(ref)
            if isinstance(found, Failure):
                return StopOutcome.from_failure(found)
            ref, client = found.ref, self.clients[found.ref.project]
        return client.stop(ref)

    def events(self, ref: JobRef) -> list[JobEvent] | Failure:
        """The job's newest events (newest first) from the project that holds it."""
        client = self._direct(ref)
        if client is None and ref.project != DEFAULT:
            return unknown_project(ref.project, self.names)
        if client is None:
            found = self._locate(ref)
            if isinstance(found, Failure):
                return found
            ref, client = found.ref, self.clients[found.ref.project]
        return client.events(ref)

    def link(self, ref: JobRef) -> str:
        """The job's console page, "" for none (links off; or, with several projects, a ref
        that names none: which region is unknown without a look-up)."""
        client = self._direct(ref)
        return client.link(ref) if client is not None else ""

    def _direct(self, ref: JobRef):
        """The one client that answers for ``ref``, or None (unknown, or to be located)."""
        if not self.several:
            return next(iter(self.clients.values()))
        return None if ref.project == DEFAULT else self.clients.get(ref.project)

    def _locate(self, ref: JobRef) -> Job | Failure:
        """Every project asked at once for an unqualified ref: the one job found, or why not."""
        names = self.names
        answers = list(self._pool.map(lambda n: self.clients[n].lookup(ref), names))
        found = [a for a in answers if not isinstance(a, Failure)]
        if len(found) == 1:
            return found[0]
        if found:
            forms = ", ".join(f"`{job.ref.args}`" for job in found)
            return Failure(AMBIGUOUS, f"{ref} exists in several projects: name one, as {forms}")
        failures = [(n, a) for n, a in zip(names, answers, strict=True)
                    if a.error_code not in NOT_FOUND_CODES and a.http_status != 404]
        if not failures:
            return answers[0]      # not found anywhere: the first project's own answer
        return Failure(failures[0][1].error_code, "; ".join(
            f"{n}: {f.error_msg}" for n, f in failures), failures[0][1].http_status,
            failures[0][1].request_id)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def unknown_project(name: str, known: list[str]) -> Failure:
    return Failure(UNKNOWN_PROJECT, f"there is no project {name!r} here; the projects are "
                   f"{', '.join(known)}")


def check_project(name: str, known: list[str]) -> str:
    """``name`` if it is a configured project, else InvalidIdError naming the ones there are."""
    if name in known or (name == DEFAULT and len(known) == 1):
        return name
    raise InvalidIdError(unknown_project(name, known).error_msg)


__all__ = ["Fleet", "Source"]
