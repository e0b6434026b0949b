"""deploy/kubernetes: every manifest valid against the Kubernetes schema (kubernetes-validate,
offline, strict: an unknown field is an error), and consistent with the bot it runs: env names
that are real settings, probes at the container port (readiness /readyz, liveness /healthz),
the image's user, the roles file where ROLES_FILE says, memory sized from the benchmark's
figures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml
from pydantic import SecretStr

from bot.core.settings import Settings, load_settings
from bot.flow.roles import parse_roles

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (the dev extra) is not installed")

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes these manifests claim (CCE's oldest supported minor when written), and
# the newest schema the package bundles.
VERSIONS = ["1.28.0", kubernetes_validate.utils.latest_version() + ".0"]
# Read from the environment by something other than Settings.
NOT_SETTINGS = {"PROMETHEUS_MULTIPROC_DIR": "bot/app/serve.py"}
MIB = 1024 * 1024 / 1e6   # MB per MiB


def manifests() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(DIR.glob("*.yaml"))
            if p.name != "kustomization.yaml"}


def by_kind(kind: str, name: str | None = None) -> dict:
    found = [m for m in manifests().values() if m["kind"] == kind
             and (name is None or m["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def deployment() -> dict:
    return by_kind("Deployment")


def container() -> dict:
    (only,) = deployment()["spec"]["template"]["spec"]["containers"]
    return only


def config() -> dict[str, str]:
    return by_kind("ConfigMap", "modelarts-bot-config")["data"]


def secret() -> dict[str, str]:
    return by_kind("Secret")["stringData"]


def mebibytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1)


class TestSchema:
    @pytest.mark.parametrize("version", VERSIONS)
    @pytest.mark.parametrize("name", sorted(manifests()))
    def test_every_manifest_is_valid(self, name, version):
        kubernetes_validate.validate(manifests()[name], version, strict=True)

    def test_kustomization_applies_every_manifest(self):
        kustomization = yaml.safe_load((DIR / "kustomization.yaml").read_text())
        assert sorted(kustomization["resources"]) == sorted(manifests())

    @pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
    def test_what_apply_k_sends_is_valid(self):
        """`kubectl kustomize` (offline) builds what `kubectl apply -k` would send."""
        out = subprocess.run(["kubectl", "kustomize", str(DIR)], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        built = list(yaml.safe_load_all(out))
        assert sorted(r["kind"] for r in built) == sorted(m["kind"] for m in
                                                         manifests().values())
        for resource in built:
            kubernetes_validate.validate(resource, VERSIONS[0], strict=True)


class TestSettings:
    def test_every_env_name_is_a_setting(self):
        names = set(config()) | set(secret()) | {e["name"] for e in container().get("env", [])}
        unknown = names - set(Settings.model_fields) - set(NOT_SETTINGS)
        assert not unknown, f"not settings of bot/core/settings.py: {sorted(unknown)}"
        for name, reader in NOT_SETTINGS.items():
            assert name in (ROOT / reader).read_text()

    def test_secret_values_are_in_the_secret_and_are_placeholders(self):
        secret_fields = {n for n, f in Settings.model_fields.items()
                         if SecretStr in getattr(f.annotation, "__args__", (f.annotation,))}
        assert not secret_fields & set(config()), "a secret setting in the ConfigMap"
        assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "REDIS_URL"} <= set(secret())
        for name, value in secret().items():
            assert "REPLACE_ME" in value, f"{name} in secret.yaml is not a placeholder"

    def test_the_settings_load_and_nothing_required_is_missing(self):
        settings = load_settings(**config(), **secret())
        # Complete but for the Secret's REPLACE_ME values, which stop start-up, each named.
        given = {**config(), **secret()}
        placeholders = {k for k, v in given.items() if "REPLACE_ME" in str(v)}
        assert placeholders and {p.split()[0] for p in settings.problems()} == placeholders
        real = {k: v.replace("REPLACE_ME", "s3cret-value") if isinstance(v, str) else v
                for k, v in given.items()}
        assert load_settings(**real).problems() == []
        assert settings.PORT == container()["ports"][0]["containerPort"]

    def test_both_sources_reach_the_container(self):
        refs = container()["envFrom"]
        assert {"name": "modelarts-bot-config"} in [r.get("configMapRef") for r in refs]
        assert {"name": by_kind("Secret")["metadata"]["name"]} in [r.get("secretRef")
                                                                  for r in refs]


class TestPod:
    def test_two_replicas_and_a_budget_that_keeps_one(self):
        spec = deployment()["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["replicas"] == 2
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        pdb = by_kind("PodDisruptionBudget")["spec"]
        assert pdb["selector"]["matchLabels"].items() <= labels.items()
        assert 1 <= pdb["minAvailable"] < spec["replicas"]

    def test_readiness_is_readyz_and_liveness_healthz_on_the_container_port(self):
        """Redis down takes the pod out of the Service (/readyz), and does not restart it
        (/healthz): a restart would not bring Redis back."""
        ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
        dockerfile = (ROOT / "Dockerfile").read_text()
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container()[probe]["httpGet"]
            assert get["path"] == path
            assert ports.get(get["port"], get["port"]) == int(config()["PORT"])
        # /readyz fails within the Redis client's timeouts: the probe must wait longer.
        from bot.core.redis_conn import TIMEOUTS
        assert container()["readinessProbe"]["timeoutSeconds"] > 2 * max(TIMEOUTS.values())
        assert f"EXPOSE {config()['PORT']}" in dockerfile
        service = by_kind("Service")["spec"]
        assert service["ports"][0]["targetPort"] in ports
        assert service["selector"].items() <= (
            deployment()["spec"]["template"]["metadata"]["labels"].items())

    def test_non_root_read_only_no_capabilities_runtime_default_seccomp(self):
        pod = deployment()["spec"]["template"]["spec"]
        uid = re.search(r"useradd .*--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1)
        assert pod["securityContext"]["runAsUser"] == int(uid)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        box = container()["securityContext"]
        assert box["readOnlyRootFilesystem"] is True
        assert box["allowPrivilegeEscalation"] is False
        assert box["capabilities"] == {"drop": ["ALL"]}

    def test_every_place_it_writes_is_an_empty_dir(self):
        volumes = {v["name"]: v for v in deployment()["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container()["volumeMounts"]}
        for path in ("/tmp", config()["PROMETHEUS_MULTIPROC_DIR"]):
            assert "emptyDir" in mounts[path], path

    def test_the_roles_file_is_mounted_at_ROLES_FILE_and_parses(self):
        path = PurePosixPath(config()["ROLES_FILE"])
        volumes = {v["name"]: v for v in deployment()["spec"]["template"]["spec"]["volumes"]}
        (mount,) = [m for m in container()["volumeMounts"] if m["mountPath"] == str(path.parent)]
        assert mount.get("readOnly") is True
        roles = by_kind("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
        roles_file = parse_roles(roles["data"][path.name], source="roles.yaml")
        assert roles_file.jobs and (roles_file.users or roles_file.usergroups)

    def test_memory_is_sized_from_the_benchmark(self):
        """Request >= the measured peak RSS of the master and WEB_CONCURRENCY workers; limit >=
        the budget (rss_mb_per_worker target) for each worker plus the master."""
        bench = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
        rss = bench["rss_mb"]
        worker = max(v for k, v in rss.items() if k.startswith("worker"))
        workers = int(config()["WEB_CONCURRENCY"])
        resources = container()["resources"]
        request = mebibytes(resources["requests"]["memory"]) * MIB
        limit = mebibytes(resources["limits"]["memory"]) * MIB
        assert request >= rss["master"] + workers * worker
        assert limit >= rss["master"] + workers * bench["targets"]["rss_mb_per_worker"]["target"]
        assert limit < 4 * request, "a limit far above the request is an unplanned burst"
