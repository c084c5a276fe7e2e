"""A Docker engine and the offline inputs of the compose tier: the engine is started by hand if none
runs (Debian's docker.io; bin/setup --test installs it), the base images come from bin/base-image
(debootstrap), the wheels from bin/wheelhouse, the Kafka jars from Maven Central. Each is kept between
runs (images in the engine, wheels in docker/wheelhouse, jars in the cache)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from core.settings import default_cache_dir
from tests.waiting import wait_until_sync

REPO = Path(__file__).resolve().parent.parent


class NoEngine(RuntimeError):
    """No Docker engine runs here, and none can be started (the reason says why)."""


def docker(*args: str, timeout_s: float = 600, check: bool = True, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout_s, env=env, cwd=REPO, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def engine_running() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0


def ensure_engine(timeout_s: float = 60.0) -> None:
    """A running engine: the one there is, or dockerd started now (root only)."""
    if engine_running():
        return
    dockerd = shutil.which("dockerd")
    if shutil.which("docker") is None or dockerd is None:
        raise NoEngine("no docker CLI or dockerd here (bin/setup --test installs Debian's docker.io)")
    if os.geteuid() != 0:
        raise NoEngine("dockerd is not running and only root can start it")
    log = default_cache_dir() / "dockerd.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        subprocess.Popen(
            [dockerd, "--data-root", "/var/lib/docker", "--storage-driver", "overlay2"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the tests: the images it holds are the cache of the next run
        )
    wait_until_sync(
        engine_running,
        timeout_s,
        lambda: f"dockerd did not start: {log.read_text(errors='replace')[-2000:]}",
        every_s=0.5,
        error=NoEngine,
    )


def offline_inputs() -> None:
    """What compose.offline.yaml builds from: the base images, the wheelhouse and the Kafka jars."""
    subprocess.run([str(REPO / "bin" / "base-image")], check=True, timeout=1800, capture_output=True)
    subprocess.run([str(REPO / "bin" / "wheelhouse")], check=True, timeout=1800, capture_output=True)
    cli = [str(REPO / ".venv" / "bin" / "babelstream"), "kafka-libs", "--into", str(REPO / "docker" / "kafka-libs")]
    subprocess.run(cli, check=True, timeout=900, capture_output=True)


COMPOSE_VERSION = "v2.29.7"


def ensure_compose(timeout_s: float = 1800.0) -> None:
    """Compose v2 as a docker CLI plugin (Debian's docker-compose is v1 and rejects compose.yaml's
    ``name:``): built once from the Go module proxy into the cache, then installed for this user."""
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode == 0 and COMPOSE_VERSION in probe.stdout:
        return
    cache = default_cache_dir() / f"compose-{COMPOSE_VERSION}"
    binary = cache / "cmd"
    if not binary.is_file():
        go = shutil.which("go") or "/usr/local/go/bin/go"
        if not Path(go).exists():
            raise NoEngine("Go builds Compose v2 here, and there is no go")
        cache.mkdir(parents=True, exist_ok=True)
        ldflags = f"-X github.com/docker/compose/v2/internal.Version={COMPOSE_VERSION}"
        subprocess.run(
            [go, "install", "-ldflags", ldflags, f"github.com/docker/compose/v2/cmd@{COMPOSE_VERSION}"],
            env={**os.environ, "GOBIN": str(cache), "GOFLAGS": "-mod=mod"},
            check=True,
            timeout=timeout_s,
            capture_output=True,
        )
    plugins = Path.home() / ".docker" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, plugins / "docker-compose")
