"""``babelstream up``'s process supervisor: the stack's services as child processes, watched.

Quiet by default. Each service's output goes to its own log (``STATE_DIR/logs/<service>.log``); the
terminal gets one line per service as it becomes ready (its ``/healthz`` answers 200), then where the
web page, the WebSocket and Kafka are. What a service prints while it starts (Faust's subscription and
partition tables, a consumer group coordinator's complaints that are normal then: a worker answers
``/healthz`` before its group has formed) stays in its log; ``settle_s`` after it is ready its errors
are shown (ERROR and CRITICAL lines, tracebacks whole). A service
that exits is reported with the end of its log, and the others are stopped. ``verbose``: every line of
every service, behind its name.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.markup import escape

ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|^Traceback \(most recent call last\)")
LOG_TAIL_LINES = 30
REMIND_S = 30.0  # a service not ready yet is named again this often
SETTLE_S = 10.0  # after a service is ready, its errors are shown from then on
STOP_TIMEOUT_S = 20.0


@dataclass
class Service:
    name: str
    args: Sequence[str]
    env: dict[str, str]
    health_url: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    ready: bool = False
    started_s: float = 0.0
    ready_s: float = 0.0
    _in_traceback: bool = field(default=False, repr=False)


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``url`` answers 200 (a local service: a self-signed certificate is accepted)."""
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as r:
            return bool(r.status == 200)
    except (OSError, ValueError):
        return False


class Supervisor:
    def __init__(self, console: Console, log_dir: Path, verbose: bool = False, settle_s: float = SETTLE_S) -> None:
        self.console = console
        self.log_dir = log_dir
        self.verbose = verbose
        self.settle_s = settle_s
        self.services: list[Service] = []
        self._pumps: list[threading.Thread] = []
        self._print = threading.Lock()

    def start(self, service: Service) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        service.log_path = self.log_dir / f"{service.name}.log"
        service.started_s = time.monotonic()
        service.proc = subprocess.Popen(
            list(service.args), env=service.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.services.append(service)
        pump = threading.Thread(target=self._pump, args=(service,), name=f"log-{service.name}", daemon=True)
        pump.start()
        self._pumps.append(pump)

    def _pump(self, service: Service) -> None:
        """Every line to the service's log; to the terminal as ``verbose`` and readiness say."""
        assert service.proc is not None and service.proc.stdout is not None and service.log_path is not None
        out: IO[bytes] = service.proc.stdout
        with service.log_path.open("ab") as log:
            for raw in iter(out.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip()
                if self.verbose or self._shows(service, line):
                    with self._print:
                        style = "dim" if self.verbose and not ERROR_LINE.search(line) else "red"
                        self.console.print(f"[{style}]{service.name}[/] {escape(line)}", highlight=False)

    def _shows(self, service: Service, line: str) -> bool:
        """A settled service's error lines, and the rest of a traceback once one has begun."""
        if service._in_traceback:
            service._in_traceback = line.startswith((" ", "\t")) or not line  # ends at the exception's line
            return True
        settled = service.ready and time.monotonic() - service.ready_s >= self.settle_s
        if not settled or not ERROR_LINE.search(line):
            return False
        service._in_traceback = line.startswith("Traceback")
        return True

    def wait_ready(self) -> bool:
        """Until every service is ready (one line each, as it comes); False if one exits first."""
        reminded_s = time.monotonic()
        while not all(s.ready for s in self.services):
            if self.exited():
                return False
            for s in self.services:
                if not s.ready and healthy(s.health_url):
                    s.ready, s.ready_s = True, time.monotonic()
                    with self._print:
                        took_s = time.monotonic() - s.started_s
                        self.console.print(f"[green]✓[/] {s.name} ready ({took_s:.0f} s)", highlight=False)
            if time.monotonic() - reminded_s >= REMIND_S:
                reminded_s = time.monotonic()
                waiting = ", ".join(s.name for s in self.services if not s.ready)
                self.console.print(f"[dim]still starting: {waiting} (logs in {self.log_dir})[/]")
            time.sleep(0.3)
        return True

    def exited(self) -> list[Service]:
        return [s for s in self.services if s.proc is not None and s.proc.poll() is not None]

    def report_exits(self) -> None:
        for s in self.exited():
            assert s.proc is not None
            self.console.print(f"[red]{s.name} exited with {s.proc.returncode}[/]; the end of {s.log_path}:")
            if s.log_path is not None and s.log_path.exists():
                tail = s.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                self.console.print(escape("\n".join(tail)), highlight=False)

    def stop(self) -> None:
        """SIGTERM to all, then SIGKILL to whatever has not ended in STOP_TIMEOUT_S."""
        for s in self.services:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.terminate()
        for s in self.services:
            if s.proc is not None:
                try:
                    s.proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    s.proc.kill()
        for pump in self._pumps:
            with contextlib.suppress(RuntimeError):
                pump.join(timeout=2)
