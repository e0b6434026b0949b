"""A job's page in the ModelArts console: the link every message naming the job carries.

One ``Console`` per project (its region and project id, the templates of bot.core.console). The
client stamps it on each job it reads (``Job.link``), so builders get it with the job; a ref
alone (an alert, a confirmation made from a job) asks the Fleet (``Fleet.link``). No link ("")
when links are off, or when the template needs a region the project does not have (the single
project's endpoint is not ``modelarts.{region}.myhuaweicloud.com``, and no region is set).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core import console
from bot.core.projects import Project, region_of
from bot.modelarts.refs import JobRef, V1Job, V2Job


@dataclass(frozen=True)
class Console:
    templates: dict[str, str]     # "v2" / "v1" -> template, "" for no links
    region: str = ""
    project_id: str = ""

    def url(self, ref: JobRef) -> str:
        """The job's console page, or "" (see the module docstring)."""
        template = self.templates.get(ref.api, "")
        if not template:
            return ""
        values: dict[str, object] = {"region": self.region, "project_id": self.project_id}
        match ref:
            case V2Job(training_job_id):
                values["training_job_id"] = training_job_id
            case V1Job(job_id, version_id):
                values.update(job_id=job_id, version_id=version_id)
        needed = console.names(template)
        if any(not values.get(name) for name in needed):
            return ""
        return console.fill(template, {name: values[name] for name in needed})


OFF = Console({})


def console_for(templates: dict[str, str], project: Project) -> Console:
    return Console(templates, region_of(project), project.project_id)
