"""A real single-node Apache Kafka broker (KRaft mode), provisioned from Maven Central.

Used by the pytest session fixture and by ``babelstream up``. The jars are fetched once with
``mvn dependency:copy-dependencies`` into a cache folder (``~/.cache/babelstream/kafka-<version>``),
storage is formatted with ``kafka.tools.StorageTool`` and ``kafka.Kafka`` is started with a small heap
on free loopback ports. Readiness is polled with a deadline; :meth:`LocalKafka.stop` shuts it down.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from core.settings import default_cache_dir
from schemas.errors import BabelstreamError

log = logging.getLogger(__name__)

READY_LINE = "Kafka Server started"


class BrokerError(BabelstreamError, RuntimeError):
    """The local development broker did not start, or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def new_cluster_id(draw: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id as Kafka's ``Uuid.randomUuid`` makes one: URL-safe base64 of 16 random bytes,
    drawn again while it begins with '-' (command lines would read such an id as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(draw()).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def fetch_jars(version: str, cache: Path | None = None, timeout_s: float = 600.0) -> Path:
    """Return a folder holding the broker's jars, downloading them with Maven on first use."""
    libs = (cache or default_cache_dir()) / f"kafka-{version}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka jars; install it or set KAFKA_BOOTSTRAP_SERVERS")
    tmp = Path(tempfile.mkdtemp(prefix="kafka-libs-", dir=libs.parent if libs.parent.exists() else None))
    pom = resources.files("streams.kafka").joinpath("pom.xml").read_text()
    (tmp / "pom.xml").write_text(pom)
    cmd = [
        mvn,
        "-q",
        "-B",
        "dependency:copy-dependencies",
        f"-Dkafka.version={version}",
        f"-DoutputDirectory={tmp / 'libs'}",
        "-DincludeScope=runtime",
    ]
    log.info("fetching Kafka %s jars with Maven into %s", version, libs)
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise BrokerError(f"mvn failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    libs.parent.mkdir(parents=True, exist_ok=True)
    (tmp / "libs" / ".complete").write_text(version)
    try:
        os.replace(tmp / "libs", libs)
    except OSError:  # another process won the race; its copy is as good as ours
        if not marker.exists():
            raise
    shutil.rmtree(tmp, ignore_errors=True)
    return libs


@dataclass(frozen=True)
class SecureListener:
    """A SASL_SSL listener beside the PLAINTEXT one, as managed clusters have: TLS with ``keystore_pem``
    (the private key, unencrypted, then the certificate chain) and SASL PLAIN or SCRAM-SHA-256 for
    ``users`` (name -> password)."""

    keystore_pem: Path
    users: dict[str, str]
    port: int = 0

    def properties(self) -> list[str]:
        plain_users = " ".join(f'user_{u}="{p}"' for u, p in self.users.items())
        return [
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256",
            "listener.name.sasl_ssl.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.ssl.keystore.type=PEM",
            f"listener.name.sasl_ssl.ssl.keystore.location={self.keystore_pem}",
        ]

    def format_args(self) -> list[str]:
        """SCRAM credentials are stored in the cluster metadata when storage is formatted."""
        return [f"--add-scram=SCRAM-SHA-256=[name={u},password={p}]" for u, p in self.users.items()]


def _server_properties(
    data_dir: Path, port: int, controller_port: int, host: str, secure: SecureListener | None = None
) -> str:
    listeners = f"PLAINTEXT://{host}:{port}"
    advertised = listeners
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if secure is not None:
        listeners += f",SASL_SSL://{host}:{secure.port}"
        advertised = listeners
        protocols += ",SASL_SSL:SASL_SSL"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{host}:{controller_port}",
            f"listeners={listeners},CONTROLLER://{host}:{controller_port}",
            f"advertised.listeners={advertised}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map={protocols}",
            *(secure.properties() if secure is not None else []),
            f"log.dirs={data_dir / 'logs'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "num.network.threads=2",
            "num.io.threads=2",
            "log.cleaner.dedupe.buffer.size=8388608",
            "",
        ]
    )


@dataclass
class LocalKafka:
    """A broker process; ``with LocalKafka(...) as k: k.bootstrap``."""

    data_dir: Path
    version: str = "3.9.1"
    heap_mb: int = 512
    host: str = "127.0.0.1"
    port: int = 0
    start_timeout_s: float = 90.0
    secure: SecureListener | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def secure_bootstrap(self) -> str:
        """host:port of the SASL_SSL listener."""
        assert self.secure is not None
        return f"{self.host}:{self.secure.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    def start(self) -> LocalKafka:
        libs = fetch_jars(self.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        controller_port = free_port(self.host)
        if self.secure is not None and not self.secure.port:
            self.secure = replace(self.secure, port=free_port(self.host))
        props = self.data_dir / "server.properties"
        props.write_text(_server_properties(self.data_dir, self.port, controller_port, self.host, self.secure))
        log4j = self.data_dir / "log4j.properties"
        log4j.write_text(resources.files("streams.kafka").joinpath("log4j.properties").read_text())
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java (OpenJDK 17+) is needed to run the local Kafka broker")
        base = [
            java,
            f"-Xmx{self.heap_mb}m",
            f"-Xms{min(self.heap_mb, 128)}m",
            f"-Dlog4j.configuration=file:{log4j}",
            "-cp",
            f"{libs}/*",
        ]
        id_file = self.data_dir / "cluster.id"  # kept, so a persistent data dir restarts with its data
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        cluster_id = id_file.read_text().strip()
        # "--cluster-id=ID": an id kept from before that begins with '-' still parses as the option's value
        fmt_args = ["format", f"--cluster-id={cluster_id}", f"--config={props}", "--ignore-formatted"]
        fmt_args += self.secure.format_args() if self.secure is not None else []
        fmt = subprocess.run(
            [*base, "kafka.tools.StorageTool", *fmt_args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"kafka storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
        logf = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*base, "-XX:+UseSerialGC", "kafka.Kafka", str(props)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logf.close()
        self._wait_ready()
        log.info("Kafka %s ready on %s (data %s)", self.version, self.bootstrap, self.data_dir)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrokerError(f"Kafka exited with {self.process.returncode}:\n{self._log_tail()}")
            if READY_LINE in self._log_tail() and _port_open(self.host, self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"Kafka not ready after {self.start_timeout_s}s:\n{self._log_tail()}")

    def _log_tail(self, n_bytes: int = 20000) -> str:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data[-n_bytes:].decode(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
