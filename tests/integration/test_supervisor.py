"""`babelstream up` is quiet: one line per service when ready, then only errors (babelstream.supervisor)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from rich.console import Console

from babelstream.supervisor import Service, Supervisor
from streams.broker import free_port
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.timeout(60)

CHILD = r"""
import http.server, os, sys, threading, time
from pathlib import Path
print("INFO a table of partitions\nERROR the coordinator is not ready yet (normal at start-up)", flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
listen, go = Path(sys.argv[2] + ".listen"), Path(sys.argv[2])
while not listen.exists():  # the test lets it be healthy once its start-up lines are in the log
    time.sleep(0.05)
srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
while not go.exists():
    time.sleep(0.05)
print("ERROR something real\nTraceback (most recent call last):\n  File 'x.py', line 1", flush=True)
print("ValueError: bad\nINFO back to normal", flush=True)
sys.exit(3)
"""


def test_start_up_noise_stays_in_the_log_errors_after_ready_are_shown_and_an_exit_reported(tmp_path: Path) -> None:
    out = io.StringIO()
    sup = Supervisor(Console(file=out, width=200, color_system=None), tmp_path / "logs", settle_s=0)
    port, go = free_port(), tmp_path / "go"
    sup.start(
        Service(
            "svc",
            [sys.executable, "-c", CHILD, str(port), str(go)],
            dict(os.environ),
            f"http://127.0.0.1:{port}/healthz",
        )
    )
    try:
        log = tmp_path / "logs" / "svc.log"
        wait_until_sync(lambda: log.exists() and "normal at start-up" in log.read_text(), 30, "no log line", 0.05)
        Path(f"{go}.listen").touch()
        assert sup.wait_ready()
        go.touch()
        wait_until_sync(sup.exited, 30, "the service never exited", 0.05)
        sup.stop()  # joins the log pump: everything printed has been read
        sup.report_exits()
    finally:
        sup.stop()
    shown = out.getvalue()
    assert "✓ svc ready" in shown and "svc exited with 3" in shown
    assert "ERROR something real" in shown and "ValueError: bad" in shown and "File 'x.py'" in shown
    live = shown.split("exited with")[0]  # what was shown as it ran (then the log's end is printed)
    assert "normal at start-up" not in live and "a table of partitions" not in live and "back to normal" not in live
    text = log.read_text()
    assert "normal at start-up" in text and "a table of partitions" in text and "back to normal" in text
