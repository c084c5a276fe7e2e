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
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.settings import default_cache_dir
from streams.broker import free_port
from tests.certs import self_signed
from tests.waiting import wait_until_sync

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


def _call(
    method: str, url: str, body: dict | None = None, timeout_s: float = 5.0, context: ssl.SSLContext | None = None
) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=context) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@dataclass(frozen=True)
class RegistryTls:
    """Mutual TLS for a test registry: its certificate and key, and a client's, which it trusts (the
    runner is built to require a client certificate on TLS: tests/apicurio application.properties)."""

    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    truststore: Path  # PKCS12, the client certificate: what Quarkus reads

    @classmethod
    def make(cls, folder: Path) -> RegistryTls:
        (folder / "server").mkdir(parents=True, exist_ok=True)
        (folder / "client").mkdir(parents=True, exist_ok=True)
        cert, key = self_signed(folder / "server")
        client_cert, client_key = self_signed(folder / "client")
        truststore = folder / "trust.p12"
        keytool = shutil.which("keytool")
        if keytool is None:
            raise RegistryUnavailable("keytool (the Java runtime's) makes the registry's trust store")
        store = ["-keystore", str(truststore), "-storetype", "PKCS12", "-storepass", TRUSTSTORE_PASSWORD]
        subprocess.run(
            [keytool, "-importcert", "-noprompt", "-alias", "client", "-file", str(client_cert), *store],
            check=True,
            capture_output=True,
        )
        return cls(cert, key, client_cert, client_key, truststore)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cert))
        ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx

    def jvm_flags(self, port: int) -> list[str]:
        prefix = "-Dquarkus.http.ssl.certificate"
        return [
            f"-Dquarkus.http.ssl-port={port}",
            f"-Dquarkus.http.port={free_port()}",
            "-Dquarkus.http.insecure-requests=disabled",
            f"{prefix}.files={self.cert}",
            f"{prefix}.key-files={self.key}",
            f"{prefix}.trust-store-file={self.truststore}",
            f"{prefix}.trust-store-file-type=PKCS12",
            f"{prefix}.trust-store-password={TRUSTSTORE_PASSWORD}",
        ]


TRUSTSTORE_PASSWORD = "changeit"


class Apicurio:
    """One registry process; ``url`` is its Confluent-compatible API (what SCHEMA_REGISTRY_URL takes),
    over mutual TLS when ``tls`` is given."""

    def __init__(self, workdir: Path, tls: RegistryTls | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/apis/ccompat/v7"
        self.proc: subprocess.Popen[bytes] | None = None
        self._context = tls.context() if tls else None

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
                    *(self.tls.jvm_flags(self.port) if self.tls else [f"-Dquarkus.http.port={self.port}"]),
                    "-Dquarkus.http.host=127.0.0.1",
                    "-jar",
                    str(jar),
                ],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RegistryUnavailable(f"Apicurio exited:\n{self.log_path.read_text(errors='replace')[-4000:]}")
            try:
                return _call("GET", f"{self.url}/subjects", timeout_s=2, context=self._context)[0] == 200
            except OSError:
                return False

        try:
            wait_until_sync(up, timeout_s, "Apicurio not up", every_s=0.3, error=RegistryUnavailable)
        except RegistryUnavailable as e:
            self.stop()
            raise RegistryUnavailable(f"{e}:\n{self.log_path.read_text(errors='replace')[-4000:]}") from None
        # Confluent's default (Apicurio's is NONE): a changed schema must still read the old data
        status, body = self._call("PUT", "/config", {"compatibility": "BACKWARD"})
        assert status == 200, body
        return self

    def subjects(self) -> list[str]:
        return list(self._call("GET", "/subjects")[1])  # type: ignore[arg-type]

    def latest_id(self, subject: str) -> int:
        status, body = self._call("GET", f"/subjects/{subject}/versions/latest")
        assert status == 200, body
        return int(body["id"])  # type: ignore[index]

    def register(self, subject: str, schema: dict) -> tuple[int, object]:
        return self._call("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema)})

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        return _call(method, self.url + path, body, context=self._context)

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
