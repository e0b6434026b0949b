"""A short human hint for an error code, to show next to the code and message.

Only codes whose meaning is documented get a hint. ModelArts.0105 appears in the docs only as a
sample placeholder, so it has none.
"""

from __future__ import annotations

from bot.modelarts import models

TOKEN_CODES = frozenset({"ModelArts.0201", "ModelArts.0202", "ModelArts.0203", "ModelArts.0204"})
GATEWAY_AUTH_CODES = frozenset({"APIGW.0301", "APIG.0301"})

_HINTS = {
    "ModelArts.2796": "the job is not in a state that allows a stop (no longer running?): "
    "check its status",
    "ModelArts.2775": "no such training job: check the id (and, for old-version jobs, the "
    "version id)",
    "ModelArts.2878": "the job's state changed meanwhile: check its status before trying again",
    "ModelArts.0210": "MODELARTS_PROJECT_ID does not match the credentials' project",
    "ModelArts.2786": "MODELARTS_PROJECT_ID does not match the credentials' project",
    "ModelArts.0212": "the IAM token is not project-scoped: check MODELARTS_PROJECT_ID",
    "ModelArts.2799": "ModelArts is rate limiting the bot: try again in a moment",
    "ModelArts.0108": "the credentials lack permission for this operation",
    "ModelArts.0112": "a policy does not allow this operation for these credentials",
    "ModelArts.2771": "the credentials lack permission to change this job",
    "ModelArts.0010": "ModelArts is failing, try again",
    "BOT.IAM_AUTH_FAILED": "no IAM token: check MODELARTS_USERNAME, MODELARTS_PASSWORD, "
    "MODELARTS_DOMAIN and MODELARTS_IAM_ENDPOINT",
    models.TIMEOUT: "outcome unknown: check /modelarts status before trying again",
    models.REFUSED: "ModelArts could not be reached: check MODELARTS_ENDPOINT and the network",
    models.TRANSPORT: "the connection failed: check /modelarts status before trying again",
    models.REDIRECT: "the bot never follows a redirect (it would send the credentials to "
    "another host): set the endpoint to the API itself",
}


def hint_for(error_code: str, http_status: int | None = None, *,
             read_only: bool = False) -> str | None:
    """A hint for ``error_code`` (and the HTTP status, for server errors), or None.
    ``read_only``: the failed call was a look-up, which changed nothing whatever its answer."""
    if read_only and error_code in (models.TIMEOUT, models.TRANSPORT):
        return _HINTS[models.REFUSED]
    if error_code in _HINTS:
        return _HINTS[error_code]
    if error_code in TOKEN_CODES:
        return "the IAM token was refused: check the MODELARTS_* credentials; " \
            "the bot fetches a new token on the next try"
    if error_code in GATEWAY_AUTH_CODES:
        return "authentication failed: check MODELARTS_AK and MODELARTS_SK (or the IAM user)"
    if http_status is not None and http_status >= 500:
        return "ModelArts is failing, try again"
    return None
