"""A real Confluent-compatible schema registry for the tests: Apicurio Registry (its ``/apis/ccompat/v7``
API speaks the Confluent protocol), built once from Maven Central (``tests/apicurio/pom.xml``, cached by
the pom's digest) and run as a plain Java process with in-memory storage.

``python -m tests.registry --build`` builds it ahead (``bin/setup --test`` does).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from babelstream.settings import default_cache_dir
from streams.broker import free_port

PROJECT = Path(__file__).parent / "apicurio"
JVM_FLAGS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]


class RegistryUnavailable(RuntimeError):
    pass


def _digest() -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in PROJECT.rglob("*") if p.is_file()):
        h.update(path.relative_to(PROJECT).as_posix().encode() + path.read_bytes())
    return h.hexdigest()[:12]


def runner_jar(timeout_s: float = 900.0) -> Path:
    """The registry's runnable jar, built on first use (about 2.5 minutes and 210 MB of Maven downloads)."""
    build = default_cache_dir() / f"apicurio-{_digest()}"
    jar = build / "target" / "apicurio-registry-runner-1.0-runner.jar"
    if jar.is_file():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RegistryUnavailable("Maven (mvn) builds the test registry; bin/setup installs it")
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(PROJECT, build)
    proc = subprocess.run(
        [mvn, "-B", "-q", "-T1", "package", "-DskipTests"], cwd=build, capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0 or not jar.is_file():
        raise RegistryUnavailable(f"building Apicurio Registry failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return jar


def _call(method: str, url: str, body: dict | None = None, timeout_s: float = 5.0) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Apicurio:
    """One registry process; ``url`` is its Confluent-compatible API (what SCHEMA_REGISTRY_URL takes)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/apis/ccompat/v7"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "apicurio.log"

    def start(self, timeout_s: float = 120.0) -> Apicurio:
        jar = runner_jar()
        java = shutil.which("java") or "java"
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    java,
                    *JVM_FLAGS,
                    f"-Dquarkus.http.port={self.port}",
                    "-Dquarkus.http.host=127.0.0.1",
                    "-jar",
                    str(jar),
                ],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RegistryUnavailable(f"Apicurio exited:\n{self.log_path.read_text(errors='replace')[-4000:]}")
            try:
                if _call("GET", f"{self.url}/subjects", timeout_s=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RegistryUnavailable(f"Apicurio not up in {timeout_s:g} s:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.3)
        # Confluent's default (Apicurio's is NONE): a changed schema must still read the old data
        status, body = _call("PUT", f"{self.url}/config", {"compatibility": "BACKWARD"})
        assert status == 200, body
        return self

    def subjects(self) -> list[str]:
        return list(_call("GET", f"{self.url}/subjects")[1])  # type: ignore[arg-type]

    def latest_id(self, subject: str) -> int:
        status, body = _call("GET", f"{self.url}/subjects/{subject}/versions/latest")
        assert status == 200, body
        return int(body["id"])  # type: ignore[index]

    def register(self, subject: str, schema: dict) -> tuple[int, object]:
        return _call("POST", f"{self.url}/subjects/{subject}/versions", {"schema": json.dumps(schema)})

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)


if __name__ == "__main__":
    if sys.argv[1:] == ["--build"]:
        print(runner_jar())
    else:
        sys.exit("usage: python -m tests.registry --build")
