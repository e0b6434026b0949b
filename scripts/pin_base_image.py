"""Pin the Dockerfile's base image by digest: `make pin-base` (python scripts/pin_base_image.py).

Asks Docker Hub, through the registry's HTTP API (no Docker engine needed), which digest the
tag in `ARG PYTHON_IMAGE=python:3.11-slim` names now, and writes `python:3.11-slim@sha256:...`
there. The digest is that of the multi-platform index, so one pin serves amd64 and arm64 builds.
Run it again to move to a newer patch release of the base (security fixes), then rebuild.

    GET  https://auth.docker.io/token?service=registry.docker.io
             &scope=repository:library/python:pull                       -> a pull token
    HEAD https://registry-1.docker.io/v2/library/python/manifests/3.11-slim -> Docker-Content-Digest
"""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"
ARG = re.compile(r"^ARG PYTHON_IMAGE=(?P<image>[a-z0-9./-]+):(?P<tag>[\w.-]+)"
                 r"(?:@sha256:[0-9a-f]{64})?$", re.MULTILINE)
INDEX_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
TIMEOUT = 10


def current(text: str) -> tuple[str, str]:
    """(image, tag) of the ARG line."""
    m = ARG.search(text)
    if not m:
        raise SystemExit("Dockerfile: no `ARG PYTHON_IMAGE=<image>:<tag>` line to pin")
    return m["image"], m["tag"]


def pinned(text: str, digest: str) -> str:
    """The Dockerfile with the ARG line pinned to digest (the tag kept, for people)."""
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ValueError(f"not a digest: {digest!r}")
    return ARG.sub(lambda m: f"ARG PYTHON_IMAGE={m['image']}:{m['tag']}@{digest}", text, count=1)


def resolve(image: str, tag: str) -> str:
    """The digest Docker Hub gives image:tag now."""
    repo = image if "/" in image else f"library/{image}"
    token_url = ("https://auth.docker.io/token?service=registry.docker.io"
                 f"&scope=repository:{repo}:pull")
    with urllib.request.urlopen(token_url, timeout=TIMEOUT) as resp:  # noqa: S310 (https only)
        token = json.load(resp)["token"]
    request = urllib.request.Request(
        f"https://registry-1.docker.io/v2/{repo}/manifests/{tag}", method="HEAD",
        headers={"Authorization": f"Bearer {token}", "Accept": INDEX_TYPES})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310 (https only)
        return resp.headers["Docker-Content-Digest"]


def main() -> int:
    text = DOCKERFILE.read_text()
    image, tag = current(text)
    try:
        digest = resolve(image, tag)
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        print(f"pin-base: cannot ask Docker Hub for {image}:{tag}: {exc}", file=sys.stderr)
        return 1
    DOCKERFILE.write_text(pinned(text, digest))
    print(f"pin-base: {image}:{tag}@{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
