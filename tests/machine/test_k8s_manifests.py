"""deploy/k8s validates offline: built-in kinds against the Kubernetes OpenAPI schemas that
kubernetes-validate ships (strict: unknown fields are errors), KEDA's ScaledObjects structurally and
against the settings they scale on; the GPU overlay's JSON patch applies and still validates."""

from __future__ import annotations

from pathlib import Path

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "k8s" / "base"
GPU = REPO / "deploy" / "k8s" / "overlays" / "gpu"
K8S_VERSION = "1.30.0"
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}


def kustomization(folder: Path) -> dict:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def resources(folder: Path = BASE) -> list[dict]:
    docs = []
    for name in kustomization(folder)["resources"]:
        path = folder / name
        assert path.is_file(), f"{folder.name}/kustomization.yaml lists {name}, which does not exist"
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str, docs: list[dict] | None = None) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in (docs or resources()) if d["kind"] == kind}


def config() -> dict[str, str]:
    return by_kind("ConfigMap")["babelstream-config"]["data"]


BUILT_IN = [d for d in resources() if not d["apiVersion"].startswith("keda.sh/")]  # KEDA's: checked below


@pytest.mark.parametrize("doc", BUILT_IN, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_built_in_kinds_validate_strictly(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    gateway = by_kind("Deployment")["gateway"]
    gateway["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"tcpSocket": {"port": "http"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(gateway, K8S_VERSION, strict=True)


def test_the_gpu_overlay_patches_the_stt_worker_and_still_validates() -> None:
    k = kustomization(GPU)
    assert k["resources"] == ["../../base"]
    [patch] = k["patches"]
    assert patch["target"] == {"group": "apps", "version": "v1", "kind": "Deployment", "name": "stt"}
    ops = yaml.safe_load((GPU / patch["path"]).read_text())
    stt = jsonpatch.apply_patch(by_kind("Deployment")["stt"], ops)
    kubernetes_validate.validate(stt, K8S_VERSION, strict=True)
    container = stt["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["DEVICE"], env["COMPUTE_TYPE"]) == ("cuda", "float16")
    compose_gpu = yaml.safe_load((REPO / "compose.gpu.yaml").read_text())["services"]["stt"]["environment"]
    gpu = {"FINAL_TIMESTAMPS", "MAX_BATCH_SIZE", "ENCODER_PAD_MS", "BUSY_ENCODER_PAD_MS"}
    assert {k: env[k] for k in gpu} == {k: str(compose_gpu[k]) for k in gpu}  # alike (test_deploy_manifests)
    assert len(env) == len(container["env"]), "an environment variable is set twice"
    assert {"name": "babelstream/stt", "newName": "babelstream/stt-gpu", "newTag": "latest"} in k["images"]


def test_services_read_only_settings_that_exist_and_probe_real_ports() -> None:
    assert set(config()) <= SETTINGS_ENV
    load_settings(**{k.lower(): v for k, v in config().items()})  # the values parse, too
    for name, dep in by_kind("Deployment").items():
        spec = dep["spec"]["template"]["spec"]
        [container] = spec["containers"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        unknown = {e["name"] for e in container.get("env", [])} - SETTINGS_ENV
        assert not unknown, f"{name}: environment variables no setting reads: {unknown}"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe in container:
                check = container[probe].get("httpGet") or container[probe]["tcpSocket"]
                assert check["port"] in ports, f"{name}.{probe} checks an unnamed port"
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert (
            int(annotations["prometheus.io/port"]) in ports.values() and annotations["prometheus.io/path"] == "/metrics"
        )
    for name in ("stt", "translate"):
        [c] = by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    gateway_pdb = by_kind("PodDisruptionBudget")["gateway"]
    assert gateway_pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "gateway"}
    service_ports = {p["name"] for p in by_kind("Service")["gateway"]["spec"]["ports"]}
    assert service_ports == {"ws", "http"}


def test_keda_scales_each_worker_group_on_its_own_lag_within_the_partitions() -> None:
    settings = load_settings(**{k.lower(): v for k, v in config().items()})
    prefix = settings.topic_prefix
    deployments = by_kind("Deployment")
    expected = {
        "stt": (f"{prefix}.audio.v1", f"{prefix}-stt", settings.audio_partitions),
        "translate": (f"{prefix}.results.v1", f"{prefix}-translate", settings.results_partitions),
    }
    scaled = by_kind("ScaledObject")
    assert set(scaled) == set(expected)
    for name, so in scaled.items():
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        spec = so["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        topic, group, partitions = expected[spec["scaleTargetRef"]["name"]]
        assert spec["maxReplicaCount"] <= partitions, f"{name}: more workers than partitions would stand idle"
        [trigger] = spec["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka" and meta["bootstrapServers"] == settings.kafka_bootstrap_servers
        assert (meta["topic"], meta["consumerGroup"]) == (topic, group)
        assert int(meta["lagThreshold"]) > 0 and meta["allowIdleConsumers"] == "false"
        assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values are strings"


def test_the_dashboard_and_scrape_config_ship_with_the_base() -> None:
    [generator] = kustomization(BASE)["configMapGenerator"]
    [entry] = generator["files"]
    assert (BASE / entry.split("=", 1)[1]).is_file()
    scrape = yaml.safe_load(by_kind("ConfigMap")["babelstream-prometheus"]["data"]["scrape-babelstream.yaml"])
    assert scrape["scrape_configs"][0]["kubernetes_sd_configs"] == [{"role": "pod"}]
