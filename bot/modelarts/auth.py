"""How the client proves who it is: AK/SK request signing, or an IAM token shared through Redis.

Both give ``headers(method, url, params, body)`` for one request. A token that ModelArts rejects
is dropped with ``invalidate(token)``; the next ``headers`` call fetches a new one. The token
request never follows a redirect: that would post the IAM password to another host.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from datetime import UTC, datetime

import redis
import requests
from pydantic import SecretStr

from bot.core import net
from bot.core.keys import Keys
from bot.modelarts import signer
from bot.modelarts.models import Failure
from bot.modelarts.redirects import redirect_failure

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Auth-Token"  # noqa: S105 - a header name, not a secret
IAM_AUTH_FAILED = "BOT.IAM_AUTH_FAILED"
REFRESH_MARGIN_SECONDS = 300  # a cached token is dropped 5 minutes before IAM says it expires
_LOCAL_MARGIN_SECONDS = 60.0  # the in-process fallback keeps a token a little closer to expiry
REDIS_PAUSE_SECONDS = 30.0  # after a Redis failure, use the in-process token this long


class AuthError(Exception):
    """No credential could be made for the request; ``failure`` says why (never with a secret)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.error_code}: {failure.error_msg}")
        self.failure = failure


class AkSkAuth:
    """Signs every request with SDK-HMAC-SHA256, adding X-Project-Id first as the SDK does."""

    def __init__(self, access_key: str, secret_key: SecretStr, project_id: str) -> None:
        self.access_key = access_key
        self._secret_key = secret_key
        self.project_id = project_id

    def headers(
        self, method: str, url: str, params: signer.QueryItems = (), body: bytes | None = None
    ) -> dict[str, str]:
        base = {"Content-Type": "application/json", "X-Project-Id": self.project_id}
        return signer.sign(method, url, base, body, self.access_key,
                           self._secret_key.get_secret_value(), params)

    def invalidate(self, token: str) -> bool:
        """A signature has nothing to renew: False, so the caller does not retry."""
        return False


class IamTokenAuth:
    """A project-scoped IAM token, cached in Redis so that every replica shares one.

    The scope is the project id (MODELARTS_PROJECT_ID, the one in every ModelArts URL, so the
    token can never name another project), or ``project_name`` when one is given (an override).
    A short Redis lock keeps replicas from all fetching at once. When Redis fails, the token is
    kept in this process instead, so the bot still works.
    """

    # Delete a key only while it still holds the given value (a rejected token, or our lock).
    # KEYS[1]: the key; ARGV[1]: the value the caller owns. Returns 1 if deleted, else 0.
    DELETE_IF_EQUAL = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then
        return redis.call('DEL', KEYS[1])
    end
    return 0
    """

    def __init__(
        self,
        iam_endpoint: str,
        username: str,
        password: SecretStr,
        domain: str,
        project_id: str,
        session: requests.Session,
        redis: redis.Redis,
        key_prefix: str,
        timeout: float,
        *,
        project_name: str | None = None,
    ) -> None:
        self.iam_endpoint = iam_endpoint.rstrip("/")
        self.username = username
        self._password = password
        self.domain = domain
        # The project scope IAM gets: {"id": ...}, or {"name": ...} when overridden.
        self.scope = {"name": project_name} if project_name else {"id": project_id}
        self._session = session
        self._redis = redis
        self._timeout = timeout
        kind, value = next(iter(self.scope.items()))
        scope = "\n".join([self.iam_endpoint, username, domain, kind, value]).encode()
        self.key = Keys(key_prefix).iam_token(hashlib.sha256(scope).hexdigest()[:16])
        self._lock_key = self.key + ":lock"  # same {iam} hash tag as the token
        self._lock_ms = int((timeout + 2) * 1000)
        self._delete_if_equal = redis.register_script(self.DELETE_IF_EQUAL)
        self._local: tuple[str, float] | None = None  # (token, unix time to stop using it)
        self._local_lock = threading.Lock()
        self._redis_paused_until = 0.0  # monotonic time

    def headers(
        self, method: str, url: str, params: signer.QueryItems = (), body: bytes | None = None
    ) -> dict[str, str]:
        return {"Content-Type": "application/json", TOKEN_HEADER: self.token()}

    def token(self) -> str:
        """The shared token, fetched when none is cached. Raises AuthError."""
        if time.monotonic() < self._redis_paused_until:
            return self._local_token()
        try:
            return self._shared_token()
        except redis.RedisError as exc:
            log.warning("Redis failed while reading the IAM token (%s); using this process's "
                        "token for %ss", type(exc).__name__, REDIS_PAUSE_SECONDS)
            self._redis_paused_until = time.monotonic() + REDIS_PAUSE_SECONDS
            return self._local_token()

    def invalidate(self, token: str) -> bool:
        """Forget ``token`` (only if it is still the cached one). True: a new token may help."""
        with self._local_lock:
            if self._local and self._local[0] == token:
                self._local = None
        if time.monotonic() < self._redis_paused_until:
            return True
        try:
            self._delete_if_equal(keys=[self.key], args=[token])
        except redis.RedisError as exc:
            log.warning("Redis failed while dropping the IAM token (%s)", type(exc).__name__)
        return True

    def _shared_token(self) -> str:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + self._lock_ms / 1000 + 1
        while True:
            cached = self._redis.get(self.key)
            if cached:
                return cached if isinstance(cached, str) else cached.decode()
            if self._redis.set(self._lock_key, owner, nx=True, px=self._lock_ms):
                try:
                    return self._fetch_and_store()
                finally:
                    self._delete_if_equal(keys=[self._lock_key], args=[owner])
            if time.monotonic() > deadline:  # the lock should have expired: never wait forever
                return self._fetch_and_store()
            time.sleep(0.05)

    def _local_token(self) -> str:
        with self._local_lock:
            if self._local and self._local[1] > time.time():
                return self._local[0]
            token, expires_at = self._fetch()
            self._local = (token, expires_at - _LOCAL_MARGIN_SECONDS)
            return token

    def _fetch_and_store(self) -> str:
        token, expires_at = self._fetch()
        with self._local_lock:
            self._local = (token, expires_at - _LOCAL_MARGIN_SECONDS)
        keep_until_ms = int((expires_at - REFRESH_MARGIN_SECONDS) * 1000)
        if keep_until_ms > time.time() * 1000:
            self._redis.set(self.key, token, pxat=keep_until_ms)
        return token

    def _fetch(self) -> tuple[str, float]:
        """POST /v3/auth/tokens; the token and its expiry (unix seconds), or AuthError."""
        url = f"{self.iam_endpoint}/v3/auth/tokens"
        try:
            resp = self._session.post(url, json=self._body(), timeout=self._timeout,
                                      headers={"Content-Type": "application/json;charset=utf8"},
                                      allow_redirects=False)
        except requests.RequestException as exc:
            raise _failed(f"IAM could not be reached: {net.reason(exc)}") from None
        redirected = redirect_failure(resp, "IAM", "MODELARTS_IAM_ENDPOINT")
        if redirected:
            raise AuthError(redirected)
        request_id = resp.headers.get("X-Request-Id")
        if resp.status_code != 201:
            raise AuthError(_iam_error(resp, request_id))
        token = resp.headers.get("X-Subject-Token")
        expires_at = _expires_at(resp)
        if not token or expires_at is None:
            raise _failed("IAM answered without a token or its expiry", resp.status_code,
                          request_id)
        log.info("fetched a new IAM token for user %s, project %s", self.username, self.scope)
        return token, expires_at

    def _body(self) -> dict:
        user = {"name": self.username, "password": self._password.get_secret_value(),
                "domain": {"name": self.domain}}
        return {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                         "scope": {"project": dict(self.scope)}}}


def _failed(msg: str, status: int | None = None, request_id: str | None = None) -> AuthError:
    return AuthError(Failure(IAM_AUTH_FAILED, msg, status, request_id))


def _iam_error(resp: requests.Response, request_id: str | None) -> Failure:
    """IAM answers either ``{"error_code","error_msg"}`` or Keystone's ``{"error": {...}}``."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    code, msg = IAM_AUTH_FAILED, "no readable error body"
    if isinstance(body, dict):
        nested = body.get("error") if isinstance(body.get("error"), dict) else {}
        code = str(body.get("error_code") or IAM_AUTH_FAILED)
        msg = str(body.get("error_msg") or nested.get("message") or msg)
    return Failure(code, f"IAM refused the token request (HTTP {resp.status_code}): {msg[:200]}",
                   resp.status_code, request_id)


def _expires_at(resp: requests.Response) -> float | None:
    try:
        when = datetime.fromisoformat(resp.json()["token"]["expires_at"])
    except (ValueError, KeyError, TypeError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
