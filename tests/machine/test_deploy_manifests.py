"""compose.yaml, the GPU override and the Dockerfiles parse and agree with the code they run (the
``compose`` tier, tests/compose, builds the images and runs the stack)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}
# what a GPU worker sets, alike in docker/stt-gpu.Dockerfile, compose.gpu.yaml and the k8s GPU overlay
GPU_SETTINGS = {"DEVICE", "COMPUTE_TYPE", "FINAL_TIMESTAMPS", "MAX_BATCH_SIZE", "ENCODER_PAD_MS", "BUSY_ENCODER_PAD_MS"}


def compose(name: str = "compose.yaml") -> dict:
    return yaml.safe_load((REPO / name).read_text())


def dockerfile_targets(path: Path) -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", path.read_text(), re.MULTILINE | re.IGNORECASE))


def test_compose_services_and_build_targets() -> None:
    c = compose()
    assert {"kafka", "gateway", "stt", "translate"} <= set(c["services"])
    for name in ("gateway", "stt", "translate"):
        svc = c["services"][name]
        build = svc["build"]
        assert (REPO / build["dockerfile"]).is_file()
        assert build["target"] in dockerfile_targets(REPO / build["dockerfile"])
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert svc["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        unknown = set(svc["environment"]) - SETTINGS_ENV
        assert not unknown, f"{name}: environment variables no setting reads: {unknown}"
    # workers publish no fixed host ports, so `--scale stt=N` works
    assert "ports" not in c["services"]["stt"] and "ports" not in c["services"]["translate"]
    assert c["services"]["gateway"]["ports"] == ["${GATEWAY_WS_PORT:-5026}:5026", "${GATEWAY_HTTP_PORT:-8080}:8080"]
    kafka = c["services"]["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("ENV "):
            env.update(item.split("=", 1) for item in shlex.split(line[4:]))  # type: ignore[misc]
    return env


def test_gpu_override() -> None:
    stt = compose("compose.gpu.yaml")["services"]["stt"]
    gpu = {k: str(v) for k, v in stt["environment"].items() if k in GPU_SETTINGS}
    image = dockerfile_env(REPO / stt["build"]["dockerfile"])
    assert gpu == {k: image[k] for k in GPU_SETTINGS}
    s = load_settings(**{k.lower(): v for k, v in gpu.items()})
    assert (s.device, s.final_timestamps, s.max_batch_size, s.encoder_pad_ms) == ("cuda", False, 16, -1)
    assert stt["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert (REPO / stt["build"]["dockerfile"]).is_file()


def test_dockerfiles_copy_what_exists_and_run_real_commands() -> None:
    for path in (REPO / "docker").glob("*Dockerfile"):
        text = path.read_text()
        for src in re.findall(r"^COPY\s+(?!--)(.+)\s+\S+$", text, re.MULTILINE):
            for item in src.split():
                assert (REPO / item).exists(), f"{path.name}: COPY {item} does not exist"
        for cmd in re.findall(r'^CMD \["babelstream", "([a-z]+)"', text, re.MULTILINE):
            assert cmd in {"gateway", "worker"}
        for env in re.findall(r"\b([A-Z_]+)=", " ".join(re.findall(r"^ENV (.+(?:\\\n.+)*)", text, re.MULTILINE))):
            assert env in SETTINGS_ENV | {
                "PYTHONDONTWRITEBYTECODE",
                "PYTHONUNBUFFERED",
                "PIP_NO_CACHE_DIR",
                "PIP_DISABLE_PIP_VERSION_CHECK",
                "XDG_CACHE_HOME",
                "DEBIAN_FRONTEND",
                "PATH",
            }, f"{path.name}: {env}"


def test_the_composed_gateway_is_given_credentials() -> None:
    """It listens on 0.0.0.0, where authentication is required: compose must pass the keys in."""
    env = compose()["services"]["gateway"]["environment"]
    assert env["GATEWAY_HOST"] == "0.0.0.0" and "BABELSTREAM_API_KEYS:?" in env["API_KEYS"]


def test_the_offline_override_builds_everything_from_local_inputs() -> None:
    off = compose("compose.offline.yaml")["services"]
    kafka = off["kafka"]["build"]
    assert (REPO / kafka["dockerfile"]).is_file() and kafka["args"]["JRE_IMAGE"].startswith("${JRE_IMAGE:-")
    assert "/dev/tcp/127.0.0.1/9092" in " ".join(off["kafka"]["healthcheck"]["test"])
    for name in ("gateway", "stt", "translate"):
        assert off[name]["build"]["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-babelstream-base:bookworm}"
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile and "--no-index --find-links /wheelhouse" in dockerfile
    allowed = [ln for ln in (REPO / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert allowed[0] == "*" and "!docker/wheelhouse" in allowed and "!docker/kafka-libs" in allowed
