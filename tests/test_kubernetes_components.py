"""deploy/kubernetes/components: what a team can switch on over the base, each checked offline.

- Every resource of every component against the Kubernetes schema (kubernetes-validate, strict),
  except the prometheus-operator kinds (ServiceMonitor, PrometheusRule), which that schema does not
  know: those against a small schema of our own below, the subset of the operator's CRDs we use
  (strict too: a misspelt field fails).
- The base as kustomize builds it (`kubectl kustomize`, offline: kubectl bundles kustomize, and
  our machine image has kubectl) with every component switched on in its kustomization.yaml: the
  patches apply, and what comes out is valid. Skipped where kubectl is missing; each file is
  still checked on its own then.
- Each component against the bot and the base: the ServiceMonitor scrapes the Service's port with
  METRICS_TOKEN from the bot's Secret, the PrometheusRule is deploy/prometheus/rules.yml, the
  NetworkPolicy opens the bot's port and the bot's way out only, the HPA keeps the disruption
  budget's floor, the Ingress routes only the bot's public paths to the Service.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from tests.test_kubernetes import DIR, ROOT, VERSIONS, by_kind, container, kubernetes_validate

COMPONENTS = DIR / "components"
NAMES = ["autoscaling", "ingress-elb", "monitoring", "network-policy"]
CRDS = {"ServiceMonitor", "PrometheusRule"}
METRICS_PORT = "http"   # the Service's and the container's port name

DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {"type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                           "labels": LABELS, "annotations": LABELS}}
SELECTOR = {"type": "object", "additionalProperties": False, "minProperties": 1,
            "properties": {"matchLabels": {**LABELS, "minProperties": 1}}}


def crd(kind: str, spec: dict) -> dict:
    return {"type": "object", "additionalProperties": False,
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"},
                           "kind": {"const": kind}, "metadata": METADATA, "spec": spec}}


SCHEMAS = {
    "ServiceMonitor": crd("ServiceMonitor", {
        "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
        "properties": {
            "selector": SELECTOR,
            "namespaceSelector": {"type": "object"},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["port"],
                "properties": {
                    "port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                    "scheme": {"enum": ["http", "https"]},
                    "interval": DURATION, "scrapeTimeout": DURATION,
                    "authorization": {
                        "type": "object", "additionalProperties": False,
                        "required": ["type", "credentials"],
                        "properties": {
                            "type": {"const": "Bearer"},
                            "credentials": {
                                "type": "object", "additionalProperties": False,
                                "required": ["name", "key"],
                                "properties": {"name": {"type": "string"},
                                               "key": {"type": "string"}}}}}}}}}}),
    "PrometheusRule": crd("PrometheusRule", {
        "type": "object", "additionalProperties": False, "required": ["groups"],
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "rules"],
            "properties": {
                "name": {"type": "string"}, "interval": DURATION,
                "rules": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["alert", "expr"],
                    "properties": {"alert": {"type": "string", "pattern": r"^[A-Za-z_]\w*$"},
                                   "expr": {"type": "string", "minLength": 1},
                                   "for": DURATION, "labels": LABELS,
                                   "annotations": LABELS}}}}}}}}),
}


def kustomization(name: str) -> dict:
    return yaml.safe_load((COMPONENTS / name / "kustomization.yaml").read_text())


def resources(name: str) -> dict[str, dict]:
    return {f: yaml.safe_load((COMPONENTS / name / f).read_text())
            for f in kustomization(name).get("resources", [])}


def one(name: str, kind: str) -> dict:
    (found,) = [r for r in resources(name).values() if r["kind"] == kind]
    return found


def validate(resource: dict, version: str) -> None:
    if resource["kind"] in CRDS:
        jsonschema.validate(resource, SCHEMAS[resource["kind"]])
    else:
        kubernetes_validate.validate(resource, version, strict=True)


def every_resource() -> list[tuple[str, str]]:
    return [(name, f) for name in NAMES for f in resources(name)]


class TestEachComponent:
    def test_every_folder_is_a_component_of_files_it_lists(self):
        assert sorted(p.name for p in COMPONENTS.iterdir() if p.is_dir()) == NAMES
        for name in NAMES:
            k = kustomization(name)
            assert (k["apiVersion"], k["kind"]) == ("kustomize.config.k8s.io/v1alpha1",
                                                    "Component")
            on_disk = {p.name for p in (COMPONENTS / name).glob("*.yaml")}
            assert on_disk - {"kustomization.yaml"} == set(k["resources"])

    @pytest.mark.parametrize("version", VERSIONS)
    @pytest.mark.parametrize(("name", "file"), every_resource())
    def test_every_resource_is_valid(self, name, file, version):
        validate(resources(name)[file], version)

    @pytest.mark.parametrize("kind", sorted(CRDS))
    def test_our_schema_of_the_operator_kinds_refuses_a_misspelt_field(self, kind):
        """The CRD check is strict, like kubernetes-validate's: it cannot pass on anything."""
        (resource,) = [r for n in NAMES for r in resources(n).values() if r["kind"] == kind]
        wrong = yaml.safe_load(yaml.safe_dump(resource))
        wrong["spec"]["endpoint" if kind == "ServiceMonitor" else "group"] = []
        with pytest.raises(jsonschema.ValidationError):
            validate(wrong, VERSIONS[0])

    def test_the_base_names_each_component_for_switching_on(self):
        """The base's kustomization.yaml lists them, commented out; docs/deploy.md names each."""
        text = (DIR / "kustomization.yaml").read_text()
        docs = (ROOT / "docs" / "deploy.md").read_text()
        assert sorted(re.findall(r"^#   - components/([\w-]+)", text, re.MULTILINE)) == NAMES
        for name in NAMES:
            assert f"components/{name}" in docs


class TestMonitoring:
    def test_the_rules_are_deploy_prometheus_rules_yml(self):
        rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
        assert one("monitoring", "PrometheusRule")["spec"] == rules

    def test_scrapes_each_pod_on_the_service_port_with_METRICS_TOKEN(self):
        monitor = one("monitoring", "ServiceMonitor")["spec"]
        service = by_kind("Service")
        assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        (endpoint,) = monitor["endpoints"]
        assert endpoint["port"] == METRICS_PORT
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        secret = by_kind("Secret")
        assert endpoint["authorization"]["credentials"] == {
            "name": secret["metadata"]["name"], "key": "METRICS_TOKEN"}
        assert "METRICS_TOKEN" in secret["stringData"]


class TestNetworkPolicy:
    def policy(self) -> dict:
        return one("network-policy", "NetworkPolicy")["spec"]

    def test_selects_the_bots_pods_both_ways(self):
        labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
        assert self.policy()["podSelector"]["matchLabels"].items() <= labels.items()
        assert sorted(self.policy()["policyTypes"]) == ["Egress", "Ingress"]

    def test_in_only_the_bots_port_from_the_load_balancer_and_prometheus(self):
        rules = self.policy()["ingress"]
        ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
        for rule in rules:
            assert rule["ports"] == [{"port": METRICS_PORT, "protocol": "TCP"}]
            assert METRICS_PORT in ports
            assert rule["from"], "a rule without `from` admits everyone"
        peers = [peer for rule in rules for peer in rule["from"]]
        assert [p for p in peers if "ipBlock" in p] and [p for p in peers if "podSelector" in p]
        prometheus = next(p for p in peers if "podSelector" in p)
        assert "namespaceSelector" in prometheus, "a bare podSelector means this namespace only"

    def test_out_only_dns_redis_and_https(self):
        opened = set()
        for rule in self.policy()["egress"]:
            assert rule.get("ports") and rule.get("to"), "a rule without ports or peers opens all"
            opened |= {(p["port"], p["protocol"]) for p in rule["ports"]}
        assert opened == {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (443, "TCP")}


class TestAutoscaling:
    def test_scales_the_deployment_on_cpu_above_the_budgets_floor(self):
        hpa = one("autoscaling", "HorizontalPodAutoscaler")["spec"]
        deployment = by_kind("Deployment")
        assert hpa["scaleTargetRef"] == {"apiVersion": deployment["apiVersion"],
                                         "kind": "Deployment",
                                         "name": deployment["metadata"]["name"]}
        assert hpa["minReplicas"] > by_kind("PodDisruptionBudget")["spec"]["minAvailable"]
        assert hpa["minReplicas"] >= deployment["spec"]["replicas"]
        assert hpa["maxReplicas"] <= 10, "Socket Mode: at most 10 connections per app"
        (metric,) = hpa["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert container()["resources"]["requests"]["cpu"], "utilization needs a CPU request"


class TestIngress:
    def ingress(self) -> dict:
        return one("ingress-elb", "Ingress")

    def test_a_cce_elb_ingress(self):
        ingress = self.ingress()
        assert ingress["spec"]["ingressClassName"] == "cce"
        notes = ingress["metadata"]["annotations"]
        assert all(k.startswith("kubernetes.io/elb.") for k in notes)
        assert notes["kubernetes.io/elb.class"] in ("performance", "union")
        assert {"kubernetes.io/elb.id", "kubernetes.io/elb.port"} <= set(notes)
        assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]

    def test_routes_only_the_public_paths_to_the_service(self):
        service = by_kind("Service")
        paths = [p for rule in self.ingress()["spec"]["rules"] for p in rule["http"]["paths"]]
        assert sorted(p["path"] for p in paths) == ["/slack/events", "/smn"]
        code = "".join(p.read_text() for p in (ROOT / "bot").rglob("*.py"))
        for path in paths:
            assert path["pathType"] == "Exact"    # the bot serves exact paths only
            assert f'"{path["path"]}"' in code, f"the bot serves no {path['path']}"
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> list[dict]:
    """`kubectl kustomize` of the base with its `components:` lines uncommented, as a team
    switches them on."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed (it bundles kustomize)")
    copy = tmp_path_factory.mktemp("k") / "kubernetes"
    shutil.copytree(DIR, copy)
    text = (copy / "kustomization.yaml").read_text()
    text = re.sub(r"^# (components:|  - components/)", r"\1", text, flags=re.MULTILINE)
    assert text.count("- components/") == len(NAMES)
    (copy / "kustomization.yaml").write_text(text)
    out = subprocess.run([kubectl, "kustomize", str(copy)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return list(yaml.safe_load_all(out.stdout))


class TestBuilt:
    def test_every_component_is_in_the_build_and_valid(self, built):
        kinds = sorted(r["kind"] for r in built)
        base = [yaml.safe_load(p.read_text())["kind"] for p in DIR.glob("*.yaml")
                if p.name != "kustomization.yaml"]
        added = [r["kind"] for n in NAMES for r in resources(n).values()]
        assert kinds == sorted(base + added)
        for resource in built:
            assert resource["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelarts-bot"
            for version in VERSIONS:
                validate(resource, version)

    def test_the_hpa_owns_the_replica_count(self, built):
        (deployment,) = [r for r in built if r["kind"] == "Deployment"]
        assert "replicas" not in deployment["spec"]

    def test_the_elb_ingress_reaches_a_nodeport_service(self, built):
        (service,) = [r for r in built if r["kind"] == "Service"]
        assert service["spec"]["type"] == "NodePort"
