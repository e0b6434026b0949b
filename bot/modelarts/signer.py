"""SDK-HMAC-SHA256 request signing, as huaweicloudsdkcore's ``Signer`` does it.

The canonical URI gets a trailing ``/`` for signing only; the request sent keeps its path.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

QueryItems = Iterable[tuple[str, object]]


def _encode(value: str) -> str:
    return quote(value, safe="~")


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def canonical_uri(path: str) -> str:
    segments = [_encode(unquote(seg)) for seg in path.split("/")]
    uri = "/".join(segments)
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(params: QueryItems) -> str:
    """Sorted as the SDK sorts: raw (key, value) pairs first, list values among themselves."""
    out: list[str] = []
    for key, value in sorted(params):
        values = sorted(value) if isinstance(value, list | tuple) else [value]
        out.extend(f"{_encode(str(key))}={_encode(_query_value(v))}" for v in values)
    return "&".join(out)


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    return sorted(name.lower() for name in headers if "_" not in name)


def payload_hash(body: bytes | None, headers: Mapping[str, str]) -> str:
    if not body:
        return EMPTY_SHA256
    for name, value in headers.items():
        if name.lower() == "x-sdk-content-sha256":
            return value
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str, path: str, params: QueryItems, headers: Mapping[str, str], body: bytes | None
) -> str:
    names = signed_header_names(headers)
    lowered = {k.lower(): v.strip() for k, v in headers.items()}
    canon_headers = "".join(f"{name}:{lowered[name]}\n" for name in names)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(params),
            canon_headers,
            ";".join(names),
            payload_hash(body, headers),
        ]
    )


def string_to_sign(canonical: str, sdk_date: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    return hmac.new(secret_key.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    access_key: str,
    secret_key: str,
    params: QueryItems = (),
    now: datetime | None = None,
) -> dict[str, str]:
    """Return ``headers`` plus Host, X-Sdk-Date and Authorization for this request.

    ``params`` are the query items; the caller sends them in ``canonical_query`` order.
    """
    signed = dict(headers)
    lower = {k.lower() for k in signed}
    if "content-type" in lower and body:
        ctype = next(v for k, v in signed.items() if k.lower() == "content-type")
        if not ctype.startswith(("application/json", "application/bson")):
            signed["X-Sdk-Content-Sha256"] = "UNSIGNED-PAYLOAD"
    if DATE_HEADER.lower() not in lower:
        signed[DATE_HEADER] = (now or datetime.now(UTC)).strftime(DATE_FORMAT)
    if "host" not in lower:
        signed["Host"] = urlsplit(url).netloc
    sdk_date = next(v for k, v in signed.items() if k.lower() == DATE_HEADER.lower())
    canonical = canonical_request(method, urlsplit(url).path, params, signed, body)
    sig = signature(secret_key, string_to_sign(canonical, sdk_date))
    names = ";".join(signed_header_names(signed))
    signed["Authorization"] = (
        f"{ALGORITHM} Access={access_key}, SignedHeaders={names}, Signature={sig}")
    return signed


def parse_authorization(value: str) -> dict[str, str] | None:
    """Split ``SDK-HMAC-SHA256 Access=.., SignedHeaders=.., Signature=..``; None when malformed."""
    prefix = ALGORITHM + " "
    if not value.startswith(prefix):
        return None
    fields: dict[str, str] = {}
    for part in value[len(prefix) :].split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            return None
        fields[key] = val
    if not {"Access", "SignedHeaders", "Signature"} <= fields.keys():
        return None
    return fields
