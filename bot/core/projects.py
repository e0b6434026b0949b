"""MODELARTS_PROJECTS: the projects one bot serves (bot.modelarts.fleet serves them).

Each entry: ``{"name": "bj4", "project_id": "...", "region": "cn-north-4", "endpoint": "https://...",
"workspaces": ["0", "..."]}``. ``name`` is 1-32 of ``[a-z0-9-]`` and unique; ``endpoint`` may be
left out when ``region`` is given (the standard endpoint, with the SDK's one exception);
``workspaces`` defaults to the default workspace ``"0"``. Unset, MODELARTS_ENDPOINT and
MODELARTS_PROJECT_ID make the one project, ``default``, searched as before (no workspace filter).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT = "default"
NAME = re.compile(r"\A[a-z0-9-]{1,32}\Z")
# The SDK's endpoint list has one exception to https://modelarts.{region}.myhuaweicloud.com.
ENDPOINT_EXCEPTIONS = {"ap-southeast-1": "https://modelarts.ap-southeast-1.myhuaweicloud.cn"}
REGION = re.compile(r"\A[a-z]{2}-[a-z]+-\d{1,2}\Z")
WORKSPACE = re.compile(r"\A(?:0|[0-9a-zA-Z]{32})\Z")
UNKNOWN_PROJECT = "BOT.UNKNOWN_PROJECT"
AMBIGUOUS = "BOT.AMBIGUOUS"
NOT_FOUND_CODES = {"ModelArts.2775", "ModelArts.0104", "ModelArts.2614", "BOT.NOT_FOUND"}


@dataclass(frozen=True)
class Project:
    """One entry of MODELARTS_PROJECTS (or the single project of the old settings).
    ``workspaces`` None: search without a workspace filter (the single-project default)."""

    name: str
    project_id: str
    endpoint: str
    region: str = ""
    workspaces: tuple[str, ...] | None = None


def standard_endpoint(region: str) -> str:
    return ENDPOINT_EXCEPTIONS.get(region, f"https://modelarts.{region}.myhuaweicloud.com")


_STANDARD_HOST = re.compile(r"\Amodelarts\.([a-z]{2}-[a-z]+-\d{1,2})\.myhuaweicloud\."
                            r"(?:com|cn)\Z")


def region_of(project: Project) -> str:
    """The project's region: its own, or the one its standard endpoint names
    (``https://modelarts.{region}.myhuaweicloud.com``); "" when neither says (the emulator, a
    private endpoint)."""
    if project.region:
        return project.region
    found = _STANDARD_HOST.match(urlsplit(project.endpoint).hostname or "")
    return found.group(1) if found else ""


def parse_projects(text: str, check_url: Callable[[str, str], str]) -> tuple[Project, ...]:
    """MODELARTS_PROJECTS (a JSON list) as Projects, or ValueError naming what is wrong.
    ``check_url(name, url)`` validates an endpoint as MODELARTS_ENDPOINT is validated."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"MODELARTS_PROJECTS is not valid JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(raw, list) or not raw:
        raise ValueError("MODELARTS_PROJECTS must be a non-empty JSON list of projects")
    out: list[Project] = []
    for i, entry in enumerate(raw):
        out.append(_project(entry, f"MODELARTS_PROJECTS[{i}]", check_url))
    names = [p.name for p in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"MODELARTS_PROJECTS names {', '.join(twice)} more than once")
    return tuple(out)


def _project(entry: object, where: str, check_url: Callable[[str, str], str]) -> Project:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object with name, project_id, region or endpoint")
    extra = set(entry) - {"name", "project_id", "region", "endpoint", "workspaces"}
    if extra:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
    name, project_id = entry.get("name"), entry.get("project_id")
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"{where}.name must be 1-32 of a-z, 0-9 and '-', like bj4")
    where = f"{where} ({name})"
    if not isinstance(project_id, str) or not project_id.strip():
        raise ValueError(f"{where}.project_id is missing")
    region, endpoint = entry.get("region") or "", entry.get("endpoint") or ""
    if region and (not isinstance(region, str) or not REGION.match(region)):
        raise ValueError(f"{where}.region must look like cn-north-4")
    if not endpoint and not region:
        raise ValueError(f"{where} needs a region (or an endpoint)")
    if not isinstance(endpoint, str):
        raise ValueError(f"{where}.endpoint must be a URL")
    endpoint = check_url(f"{where}.endpoint", endpoint) if endpoint else standard_endpoint(region)
    workspaces = entry.get("workspaces", ["0"])
    if (not isinstance(workspaces, list) or not workspaces
            or not all(isinstance(w, str) and WORKSPACE.match(w) for w in workspaces)):
        raise ValueError(f'{where}.workspaces must be a list of workspace ids ("0" or 32 '
                          "letters and digits)")
    return Project(name, project_id.strip(), endpoint.rstrip("/"), region,
                   tuple(dict.fromkeys(workspaces)))


