"""MODELARTS_CONSOLE_URL and MODELARTS_CONSOLE_URL_V1: the templates of a job's console page.

    v2 jobs: MODELARTS_CONSOLE_URL     {region} {project_id} {training_job_id}
    v1 jobs: MODELARTS_CONSOLE_URL_V1  {region} {project_id} {job_id} {version_id}

Each must name its job's id ({training_job_id}, {job_id}) and nothing but these placeholders,
and be an http(s) URL. ``off`` (or an empty value: bot.core.settings keeps it, unlike every other
empty setting, since a link is no check) turns links off: MODELARTS_CONSOLE_URL all of them,
MODELARTS_CONSOLE_URL_V1 those of v1 jobs. The defaults are the public console's pages; the exact
paths are UNCONFIRMED (no Huawei document gives them): the v2 one is the form two independent
public examples use (``#/training/detail/{id}``), the v1 one the old console's job page.
"""

from __future__ import annotations

import string
from urllib.parse import quote, urlsplit

OFF = "off"
V2_DEFAULT = ("https://console.huaweicloud.com/modelarts/?region={region}"
              "#/training/detail/{training_job_id}")
V1_DEFAULT = ("https://console.huaweicloud.com/modelarts/?region={region}"
              "#/trainingJobs/details/{job_id}?versionId={version_id}")
PLACEHOLDERS = {"v2": ("region", "project_id", "training_job_id"),
                "v1": ("region", "project_id", "job_id", "version_id")}
REQUIRED = {"v2": "training_job_id", "v1": "job_id"}


def names(template: str) -> list[str]:
    """The placeholders ``template`` names; ValueError for a brace that opens none."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def check_template(value: str, api: str) -> str:
    """``value`` if it is ``off`` or a valid template for ``api`` jobs, else ValueError naming
    what is wrong (never the value: it is not secret, but it may be long)."""
    if value.strip().lower() == OFF:
        return OFF
    try:
        found = names(value)
    except ValueError:
        raise ValueError("is not a template: a { or } without its pair (write {{ for a brace)") \
            from None
    allowed = PLACEHOLDERS[api]
    wrong = sorted({n for n in found if n not in allowed})
    if wrong:
        raise ValueError(f"names {', '.join('{' + n + '}' for n in wrong)}: a {api} job's link "
                         f"may use {', '.join('{' + n + '}' for n in allowed)}")
    if REQUIRED[api] not in found:
        raise ValueError(f"must name {{{REQUIRED[api]}}}, the job's id")
    parts = urlsplit(fill(value, dict.fromkeys(found, "x")))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value


def fill(template: str, values: dict[str, object]) -> str:
    """``template`` with each placeholder replaced by its value, percent-encoded (a value never
    adds a ``/``, ``?``, ``#`` or ``|`` of its own)."""
    return template.format_map({k: quote(str(v), safe="") for k, v in values.items()})
