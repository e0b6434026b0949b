"""The emulator's API gateway and IAM: checks AK/SK signatures and issues and checks tokens.

Rejections look like the Huawei gateway's: HTTP 401 with APIGW.0301 and a sub-message.
IAM issues a token for a password request scoped to the emulator's project, by id or by name
(``"scope": {"project": {"id": ...}}`` or ``{"name": ...}``), and the token carries that project.
It refuses as Keystone, which IAM is built on, does: a wrong user, password or project is 401
``{"error": {...}}``; a scope that names no project id or name is 400 IAM.0007.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.modelarts import signer

MAX_CLOCK_SKEW_SECONDS = 15 * 60
GATE_CODE = "APIGW.0301"
GATE_PREFIX = "Incorrect IAM authentication information: "
SIGNATURE_FAIL = "verify aksk signature fail"
# The real gateway's text for a stale X-Sdk-Date was not seen in the docs; this one is ours.
STALE_DATE = "verify aksk signature fail, the x-sdk-date is more than 15 minutes off"
TOKEN_MISSING = "x-auth-token not found"  # noqa: S105 - messages, not secrets
TOKEN_UNKNOWN = "decrypt token fail"  # noqa: S105


@dataclass(frozen=True)
class User:
    name: str
    password: str
    domain: str


@dataclass
class Token:
    user: str
    project_id: str
    expires_at: float  # clock seconds


_UNAUTHORIZED = {"error": {"code": 401, "title": "Unauthorized",
                           "message": "The username or password is wrong."}}
_NO_PROJECT = {"error": {"code": 401, "title": "Unauthorized",
                         "message": "The request you have made requires authentication."}}
_BAD_SCOPE = {"error_code": "IAM.0007",
              "error_msg": "Request parameter auth.scope.project is invalid."}


class IamRefused(Exception):
    """A token request IAM refuses: ``status`` and the JSON ``body`` it answers."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(status)
        self.status, self.body = status, body


class Rejected(Exception):
    """A request the gate refuses: ``status``, ``code`` and ``msg`` of the error body."""

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


class Gate:
    def __init__(
        self,
        ak: str,
        sk: str,
        project_id: str,
        project_name: str,
        users: list[User],
        token_ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self.ak, self._sk = ak, sk
        self.project_id, self.project_name = project_id, project_name
        self.projects = {project_id: project_name}   # more with ``add_project``
        self._users = {(u.domain, u.name): u for u in users}
        self.token_ttl = token_ttl
        self._clock = clock
        self._tokens: dict[str, Token] = {}
        self.token_issues = 0
        self._lock = threading.Lock()

    def check(
        self, method: str, path: str, query: list[tuple[str, str]],
        headers: Mapping[str, str], body: bytes,
    ) -> str:
        """The caller (AK or user name), or Rejected. ``headers`` looks up case-insensitively."""
        if headers.get("X-Auth-Token"):
            return self._check_token(headers["X-Auth-Token"])
        if headers.get("Authorization"):
            return self._check_signature(method, path, query, headers, body)
        raise _gate(TOKEN_MISSING)

    def add_project(self, project_id: str, project_name: str) -> None:
        """Another project this IAM issues tokens for (an emulator per project sharing it)."""
        self.projects[project_id] = project_name

    def issue(self, body: object) -> tuple[str, str]:
        """A new token and its ISO expiry for a valid password request, or IamRefused."""
        try:
            identity = body["auth"]["identity"]  # type: ignore[index]
            user = identity["password"]["user"]
            key = (user["domain"]["name"], user["name"])
            ok = "password" in identity["methods"] and key in self._users
            ok = ok and hmac.compare_digest(self._users[key].password, str(user["password"]))
        except (KeyError, TypeError):
            raise IamRefused(401, _UNAUTHORIZED) from None
        if not ok:
            raise IamRefused(401, _UNAUTHORIZED)
        scoped = self._check_scope(body)
        token = "MIIemu" + secrets.token_urlsafe(32)
        expires_at = self._clock() + self.token_ttl
        with self._lock:
            self._tokens[token] = Token(key[1], scoped, expires_at)
            self.token_issues += 1
        return token, datetime.fromtimestamp(expires_at, UTC).isoformat().replace("+00:00", "Z")

    def _check_scope(self, body: object) -> str:
        """The scope must name one of this IAM's projects by id or by name (the id wins when
        both are given); its id."""
        try:
            project = body["auth"]["scope"]["project"]  # type: ignore[index]
        except (KeyError, TypeError):
            raise IamRefused(400, _BAD_SCOPE) from None
        if not isinstance(project, dict) or not (project.get("id") or project.get("name")):
            raise IamRefused(400, _BAD_SCOPE)
        if project.get("id"):
            found = project["id"] if project["id"] in self.projects else None
        else:
            found = next((i for i, n in self.projects.items() if n == project["name"]), None)
        if found is None:
            raise IamRefused(401, _NO_PROJECT)
        return found

    def project_of(self, token: str) -> str | None:
        """The project id a token is scoped to, or None for an unknown token."""
        with self._lock:
            found = self._tokens.get(token)
        return found.project_id if found else None

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, self._clock() - 1)

    def revoke_tokens(self) -> None:
        """Forget every token, as if IAM could no longer decrypt them."""
        with self._lock:
            self._tokens.clear()

    def _check_token(self, value: str) -> str:
        with self._lock:
            token = self._tokens.get(value)
        if token is None:
            raise _gate(TOKEN_UNKNOWN)
        if token.expires_at <= self._clock():
            when = datetime.fromtimestamp(token.expires_at, UTC).isoformat()
            raise _gate(f"token expires, expires_at: {when}")
        return token.user

    def _check_signature(
        self, method: str, path: str, query: list[tuple[str, str]],
        headers: Mapping[str, str], body: bytes,
    ) -> str:
        fields = signer.parse_authorization(headers["Authorization"])
        if not fields or not hmac.compare_digest(fields["Access"], self.ak):
            raise _gate(SIGNATURE_FAIL)
        names = fields["SignedHeaders"].split(";")
        signed = {name: headers.get(name) or "" for name in names}
        date = headers.get(signer.DATE_HEADER) or ""
        if signer.DATE_HEADER.lower() not in names or not self._fresh(date):
            raise _gate(STALE_DATE if date else SIGNATURE_FAIL)
        canonical = signer.canonical_request(method, path, query, signed, body)
        expected = signer.signature(self._sk, signer.string_to_sign(canonical, date))
        if not hmac.compare_digest(expected, fields["Signature"]):
            raise _gate(SIGNATURE_FAIL)
        return self.ak

    def _fresh(self, date: str) -> bool:
        try:
            sent = datetime.strptime(date, signer.DATE_FORMAT).replace(tzinfo=UTC).timestamp()
        except ValueError:
            return False
        return abs(self._clock() - sent) <= MAX_CLOCK_SKEW_SECONDS


def _gate(msg: str) -> Rejected:
    return Rejected(401, GATE_CODE, GATE_PREFIX + msg)
