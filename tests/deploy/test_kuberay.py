"""deploy/kuberay/: the RayService against KubeRay's CRD schema, core objects with
`kubernetes-validate`, and the wiring between them and the service, offline.

The CRD is KubeRay's own (v1.7.0, Apache-2.0), read from the shared reference folder that lies
beside the checkout (CI lays `shared/` next to its clone); it is not copied into the repository.
`REFRAME_KUBERAY_CRD_DIR` points elsewhere.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.dockerfile import DOCKERFILE, ROOT, instructions, lock_pin

KUBERAY = ROOT / "deploy" / "kuberay"
CRD_FILE = "ray.io_rayservices.yaml"
KUBERNETES_VERSION = "1.33"  # the oldest release the manifests promise to work on
SECRET_SETTINGS = {
    "REFRAME_SECRET_KEY",
    "REFRAME_DATABASE_URL",
    "REFRAME_REDIS_URL",
    "REFRAME_S3_ACCESS_KEY_ID",
    "REFRAME_S3_SECRET_ACCESS_KEY",
}


def crd_path() -> Path:
    override = os.environ.get("REFRAME_KUBERAY_CRD_DIR")
    candidates = [Path(override)] if override else []
    candidates += [parent / "shared" / "reference" / "kuberay" for parent in ROOT.parents]
    for folder in candidates:
        if (folder / CRD_FILE).is_file():
            return folder / CRD_FILE
    message = f"KubeRay's {CRD_FILE} not found beside the checkout (shared/reference/kuberay)"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI lays shared/ beside its clone: a missing CRD is a real fault
    pytest.skip(message + "; set REFRAME_KUBERAY_CRD_DIR")


@functools.cache
def _load_crd(path: Path) -> dict[str, Any]:
    # 1 MB of YAML: libyaml's loader when PyYAML has it (seconds faster than pure Python).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd: dict[str, Any] = yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a safe loader
    return crd


def closed(schema: Any) -> Any:
    """The schema with unknown fields refused, as `kubectl apply --validate=strict` does.

    A CRD schema leaves `additionalProperties` open (the API server prunes unknown fields
    silently), so a misspelt key would pass plain validation and then be dropped on apply.
    """
    if isinstance(schema, dict):
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            closed(value)
    elif isinstance(schema, list):
        for value in schema:
            closed(value)
    return schema


def rayservice_schema(version: str) -> dict[str, Any]:
    return _closed_schema(crd_path(), version)


@functools.cache
def _closed_schema(path: Path, version: str) -> dict[str, Any]:
    crd = _load_crd(path)
    assert crd["spec"]["names"]["kind"] == "RayService"
    served = {v["name"]: v for v in crd["spec"]["versions"] if v["served"]}
    schema: dict[str, Any] = closed(copy.deepcopy(served[version]["schema"]["openAPIV3Schema"]))
    return schema


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((KUBERAY / name).read_text())
    return document


def rayservice() -> dict[str, Any]:
    return load("rayservice.yaml")


def validate_rayservice(document: dict[str, Any]) -> None:
    group, _, version = document["apiVersion"].partition("/")
    assert group == "ray.io"
    jsonschema.Draft7Validator(rayservice_schema(version)).validate(document)


def cluster() -> dict[str, Any]:
    config: dict[str, Any] = rayservice()["spec"]["rayClusterConfig"]
    return config


def pod_templates() -> dict[str, dict[str, Any]]:
    templates = {"head": cluster()["headGroupSpec"]["template"]}
    for group in cluster()["workerGroupSpecs"]:
        templates[group["groupName"]] = group["template"]
    return templates


def serve_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    return config


def test_rayservice_matches_kuberays_crd_schema() -> None:
    document = rayservice()
    assert document["apiVersion"] == "ray.io/v1"  # the CRD's storage version
    crd = _load_crd(crd_path())
    storage = next(v["name"] for v in crd["spec"]["versions"] if v["storage"])
    assert document["apiVersion"] == f"ray.io/{storage}"
    validate_rayservice(document)


@pytest.mark.parametrize(
    "mistake",
    [
        lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(minReplica=0),
        lambda d: d["spec"]["rayClusterConfig"].update(enableInTreeAutoScaling=True),
        lambda d: d["spec"]["rayClusterConfig"]["autoscalerOptions"].update(upscalingMode="Fast"),
        lambda d: d["spec"]["rayClusterConfig"]["authOptions"].update(mode="password"),
        lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"].pop("template"),
        lambda d: d["spec"].update(rayClusterDeletionDelaySeconds=-1),
    ],
    ids=["typo", "case", "enum", "auth-mode", "required", "minimum"],
)
def test_the_crd_check_rejects_mistakes(mistake: Any) -> None:
    document = rayservice()
    mistake(document)
    with pytest.raises(jsonschema.ValidationError):
        validate_rayservice(document)


@pytest.mark.parametrize("name", ["configmap.yaml", "secret.template.yaml", "networkpolicy.yaml"])
def test_core_objects_pass_kubernetes_validate(name: str) -> None:
    document = load(name)
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert document["metadata"]["namespace"] == rayservice()["metadata"]["namespace"]


@pytest.mark.parametrize("group", ["head", "gpu"])
def test_pod_templates_pass_kubernetes_validate(group: str) -> None:
    """The CRD embeds pod templates; validate them as Kubernetes' own PodTemplate too."""
    template = pod_templates()[group]
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": group}}
    kubernetes_validate.validate({**wrapper, "template": template}, KUBERNETES_VERSION, True)
    broken = copy.deepcopy(template)
    broken["spec"]["containers"][0]["envform"] = broken["spec"]["containers"][0].pop("envFrom")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**wrapper, "template": broken}, KUBERNETES_VERSION, True)


def test_gpu_workers_scale_from_zero_with_the_autoscaler() -> None:
    assert cluster()["enableInTreeAutoscaling"] is True
    assert cluster()["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    groups = cluster()["workerGroupSpecs"]
    gpu_groups = []
    for group in groups:
        container = group["template"]["spec"]["containers"][0]
        limits = container["resources"]["limits"]
        if int(limits.get("nvidia.com/gpu", 0)) >= 1:
            gpu_groups.append(group)
            # Extended resources must be requested as they are limited.
            assert container["resources"]["requests"]["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
            assert container["image"].endswith("-cuda")
            tolerated = {t["key"] for t in group["template"]["spec"].get("tolerations", [])}
            assert "nvidia.com/gpu" in tolerated
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for group in gpu_groups:
        assert group["minReplicas"] == 0
        assert group["replicas"] == 0
        assert group["maxReplicas"] >= 1


def test_head_is_cpu_only_and_every_container_has_resources() -> None:
    head = cluster()["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    container = head["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert container["image"].endswith("-cpu")
    for group, template in pod_templates().items():
        for c in template["spec"]["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), group
            assert c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"]


def test_versions_agree_with_the_lock_and_the_dockerfile() -> None:
    import tomllib

    assert cluster()["rayVersion"] == lock_pin("ray")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for group, template in pod_templates().items():
        image = template["spec"]["containers"][0]["image"]
        assert re.fullmatch(rf"[\w.\-/]+/reframe:{re.escape(version)}-(cpu|cuda)", image), group
    user = [i.args for i in instructions(DOCKERFILE.read_text()) if i.keyword == "USER"][-1]
    uid, gid = (int(part) for part in user.split(":"))
    for group, template in pod_templates().items():
        context = template["spec"]["securityContext"]
        assert context["runAsNonRoot"] is True, group
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), group
        for c in template["spec"]["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, group


def test_serve_config_deploys_serve_app_without_secrets() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = serve_config()
    ServeDeploySchema.model_validate(config)  # Ray's own schema for `serve deploy` configs
    (app,) = config["applications"]
    assert app["import_path"] == "serve_app:app"
    assert app["route_prefix"] == "/"
    # Settings come from the pods' environment, never from Serve's own configuration.
    assert "runtime_env" not in app
    assert "args" not in app
    text = rayservice()["spec"]["serveConfigV2"]
    for name in {*SECRET_SETTINGS, "RAY_AUTH_TOKEN", "PASSWORD", "REPLACE_ME"}:
        assert name not in text


def _deployment_names(node: Any, seen: set[str]) -> set[str]:
    from ray.serve import Application

    if isinstance(node, Application):
        deployment = node._bound_deployment  # Serve keeps the bound graph here
        seen.add(deployment.name)
        _deployment_names([*deployment.init_args, *deployment.init_kwargs.values()], seen)
    elif isinstance(node, list | tuple):
        for item in node:
            _deployment_names(item, seen)
    elif isinstance(node, dict):
        _deployment_names(list(node.values()), seen)
    return seen


def test_serve_config_names_deployments_that_serve_app_has() -> None:
    import importlib

    module_name, _, attribute = serve_config()["applications"][0]["import_path"].partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
    available = _deployment_names(app, set())
    configured = {d["name"] for d in serve_config()["applications"][0].get("deployments", [])}
    assert configured <= available, f"not in {module_name}:{attribute}: {configured - available}"


def test_every_container_reads_the_configmap_and_the_secret() -> None:
    configmap = load("configmap.yaml")["metadata"]["name"]
    secret = load("secret.template.yaml")["metadata"]["name"]
    for group, template in pod_templates().items():
        for c in template["spec"]["containers"]:
            sources = c["envFrom"]
            assert {"configMapRef": {"name": configmap}} in sources, group
            assert {"secretRef": {"name": secret}} in sources, group
            assert not c.get("env"), f"{group}: settings belong in the ConfigMap or the Secret"


def test_settings_split_between_configmap_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from reframe.config import Settings

    public = load("configmap.yaml")["data"]
    secret = load("secret.template.yaml")["stringData"]
    assert set(secret) == SECRET_SETTINGS
    assert not set(public) & SECRET_SETTINGS
    assert not any(re.search(r"SECRET|PASSWORD|TOKEN|KEY", key) for key in public)
    fields = {f"REFRAME_{name.upper()}" for name in Settings.model_fields}
    reframe_keys = {key for key in {*public, *secret} if key.startswith("REFRAME_")}
    assert reframe_keys <= fields, reframe_keys - fields
    for key in list(os.environ):
        if key.startswith("REFRAME_"):
            monkeypatch.delenv(key)
    for key, value in {**public, **secret}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # what every pod will read
    assert settings.env == "production"
    assert settings.storage_backend == "s3"  # pods on other nodes cannot read the head's disk
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")


def test_the_secret_template_holds_only_marked_placeholders() -> None:
    text = (KUBERAY / "secret.template.yaml").read_text()
    assert "NOT APPLIED AS IS" in text
    for key, value in load("secret.template.yaml")["stringData"].items():
        assert "REPLACE_ME" in value, f"{key} looks like a real value"


def test_network_policy_covers_the_pods_and_opens_only_serve_to_all() -> None:
    policy = load("networkpolicy.yaml")["spec"]
    selected = policy["podSelector"]["matchLabels"]
    for group, template in pod_templates().items():
        labels = template["metadata"]["labels"]
        assert selected.items() <= labels.items(), f"{group} pods are not covered"
    assert policy["policyTypes"] == ["Ingress"]
    for rule in policy["ingress"]:
        if "from" not in rule:  # open to every source: the Serve port alone
            assert [p["port"] for p in rule["ports"]] == [8000]
    dashboard = cluster()["headGroupSpec"]["rayStartParams"]["dashboard-host"]
    if dashboard != "127.0.0.1":  # on the pod network, so it must need the cluster token
        assert cluster()["authOptions"]["mode"] == "token"


def test_upgrades_start_a_new_cluster_and_keep_the_old_one_for_running_renders() -> None:
    from reframe.config import Settings

    spec = rayservice()["spec"]
    assert spec["upgradeStrategy"]["type"] == "NewCluster"
    # The old cluster outlives at least a few leases, so its dispatcher's renders can finish
    # and the successor sees the leases lapse rather than a half-deleted cluster.
    lease = Settings.model_fields["lease_sec"].default
    assert spec["rayClusterDeletionDelaySeconds"] >= 10 * lease
