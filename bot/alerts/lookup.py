"""The look-up an alert asks for, run by the dispatcher just before the post (never at intake,
which must answer within a second): what the sender did not say, ModelArts says.

    lookup "job"  (an id: /alerts, an SMN event)  ──▶ ModelArts: name and phase; a Stop button
                  only while the job can be stopped. A failed look-up posts what the sender said,
                  with the button (a click looks the job up again, and checks the role).
    lookup "name" (/alerts naming only job_name)   ──▶ the running jobs of that name: exactly one
                  gives the alert its job and its button; none or several post it without one,
                  saying so.

Never raises: the alert is posted whatever ModelArts answers.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from bot.alerts.parse import Alert
from bot.flow.finder import Finder, NameFilter
from bot.modelarts.fleet import Fleet
from bot.modelarts.models import Failure

log = logging.getLogger(__name__)


class JobLookup:
    def __init__(self, modelarts: Fleet, finder: Finder) -> None:
        self.modelarts = modelarts
        self.finder = finder

    def __call__(self, alert: Alert) -> Alert:
        try:
            return self._by_name(alert) if alert.lookup == "name" else self._by_id(alert)
        except Exception:  # noqa: BLE001 - the alert goes out whatever the look-up did
            log.exception("alert look-up failed", extra={"job_name": alert.job_name})
            return replace(alert, lookup=None)

    def _by_id(self, alert: Alert) -> Alert:
        if alert.ref is None:
            return replace(alert, lookup=None)
        job = self.modelarts.lookup(alert.ref)
        if isinstance(job, Failure):
            log.info("alert look-up: %s", job.error_code, extra={"job": alert.ref.key})
            return replace(alert, lookup=None, link=self.modelarts.link(alert.ref))
        # What the sender said stays; ModelArts fills what it left out.
        return replace(alert, lookup=None, job_name=alert.job_name or job.name, ref=job.ref,
                       status=job.state if alert.status == "unknown" else alert.status,
                       stop=job.stoppable, link=job.link)

    def _by_name(self, alert: Alert) -> Alert:
        found = self.finder.running(NameFilter(alert.job_name, exact=True))
        if len(found.jobs) == 1:
            job = found.jobs[0]
            return replace(alert, lookup=None, ref=job.ref, status=job.state, link=job.link)
        why = (f"{len(found.jobs)} running jobs are named this: stop one with "
               f"/modelarts stop {alert.job_name}" if found.jobs else
               "could not list the running jobs: " + "; ".join(found.problems)
               if found.failures else "no running job has this name")
        note = f"No Stop button: {why}."
        return replace(alert, lookup=None, ref=None, stop=False,
                       description="\n".join(filter(None, [alert.description, note])))
