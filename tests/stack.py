"""Run real Babelstream services (gateway, Faust workers) as subprocesses against the test broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from core.settings import load_settings
from streams.broker import free_port
from streams.reader import read_range, topic_partitions
from streams.topics import topic_specs
from tests.waiting import wait_until_sync


def http_json(url: str, timeout_s: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (OSError, ValueError):
        return 0, None


def http_text(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return r.read().decode()


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    health_url: str
    log_path: Path
    ws_port: int = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def base_url(self) -> str:
        return self.health_url.rsplit("/", 1)[0]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def health(self) -> tuple[int, Any]:
        return http_json(self.health_url)

    def rss_bytes(self) -> int:
        """The process's resident memory now (Linux ``/proc``)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.name} (pid {self.proc.pid})")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no leave-group: the hardest failure."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Stack:
    bootstrap: str
    workdir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"e{uuid.uuid4().hex[:10]}")
    services: list[Service] = field(default_factory=list)
    gateway_port: int = 0
    health_port: int = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            TOPIC_PREFIX=self.prefix,
            STATE_DIR=str(self.workdir / "state"),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env_overrides)
        env.update(extra)
        return env

    def _spawn(self, name: str, args: list[str], health_url: str, **env: str) -> Service:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / f"{name}-{len(self.services)}.log"
        with log_path.open("wb") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", "babelstream.cli", *args],
                env=self.env(**env),
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        svc = Service(name, proc, health_url, log_path)
        self.services.append(svc)
        return svc

    def start_gateway(self, **env: str) -> Service:
        ws_port, health_port = free_port(), free_port()
        svc = self._spawn(
            "gateway",
            ["gateway"],
            f"http://127.0.0.1:{health_port}/healthz",
            GATEWAY_PORT=str(ws_port),
            HEALTH_PORT=str(health_port),
            **env,
        )
        svc.ws_port = ws_port
        if not self.gateway_port:
            self.gateway_port, self.health_port = ws_port, health_port
        return svc

    def start_worker(self, role: str, **env: str) -> Service:
        port = free_port()
        return self._spawn(role, ["worker", role], f"http://127.0.0.1:{port}/healthz", WORKER_WEB_PORT=str(port), **env)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}"

    @property
    def base_url(self) -> str:
        """The first gateway's HTTP port."""
        return f"http://127.0.0.1:{self.health_port}"

    def wait_healthy(self, services: list[Service] | None = None, timeout_s: float = 120.0) -> None:
        pending = list(services or self.services)

        def all_healthy() -> bool:
            for svc in list(pending):
                if svc.proc.poll() is not None:
                    raise RuntimeError(f"{svc.name} exited with {svc.proc.returncode}:\n{svc.log()}")
                if svc.health()[0] == 200:
                    pending.remove(svc)
            return not pending

        wait_until_sync(all_healthy, timeout_s, lambda: "not healthy: " + "\n".join(s.log() for s in pending))

    def wait_assigned(self, workers: list[Service], partitions: int, timeout_s: float = 120.0) -> dict[str, list[int]]:
        """Poll until the workers' assignments cover every audio partition, each worker holding some."""
        got: dict[str, list[int]] = {}

        def settled() -> dict[str, list[int]]:
            got.clear()
            for w in workers:
                status, body = w.health()
                got[w.name + str(id(w))] = body.get("audio_partitions", []) if status == 200 and body else []
            union = sorted(p for ps in got.values() for p in ps)
            return dict(got) if union == list(range(partitions)) and all(got.values()) else {}

        return wait_until_sync(settled, timeout_s, lambda: f"assignment never settled: {got}")

    async def session_values(self, session_id: str) -> list[bytes | None]:
        """Every value the sessions topic holds for ``session_id``, oldest first (None: a tombstone)."""
        topic = topic_specs(load_settings(kafka_bootstrap_servers=self.bootstrap, topic_prefix=self.prefix)).sessions
        parts = await topic_partitions(self.bootstrap, topic.name, session_id)
        return [rec.value async for rec in read_range(self.bootstrap, parts) if rec.key == session_id.encode()]

    def retire(self, svc: Service) -> None:
        """Stop a service a test added and forget it, so later tests see only the shared stack's own."""
        svc.stop()
        self.services.remove(svc)

    def stop(self) -> None:
        for svc in reversed(self.services):
            svc.stop()


async def recv_type(ws: ClientConnection, kind: str, timeout_s: float = 15.0) -> dict[str, Any]:
    """The next message of type ``kind`` from a gateway, skipping others; a fatal error while waiting for
    anything else fails at once, naming it."""
    async with asyncio.timeout(timeout_s):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == kind:
                return msg
            assert not (msg["type"] == "error" and msg.get("fatal")), msg
