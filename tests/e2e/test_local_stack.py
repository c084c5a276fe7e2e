"""README command 1: `babelstream up` brings up broker, gateway, workers and web page; Ctrl-C stops all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from babelstream.client import stream_audio
from streams.broker import free_port
from tests.audio import librivox, wer
from tests.stack import http_json, http_text
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.timeout(300)


def test_up_runs_the_whole_stack_and_stops_cleanly(tmp_path: Path) -> None:
    ws_port, health_port, web_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}  # its own broker
    env.update(
        STATE_DIR=str(tmp_path / "state"),
        GATEWAY_PORT=str(ws_port),
        HEALTH_PORT=str(health_port),
        WORKER_WEB_PORT=str(web_port),
        MODEL_SIZE="tiny.en",
        PYTHONUNBUFFERED="1",
    )
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "babelstream.cli", "up"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # gateway; workers stt, translate, stats, archive on consecutive web ports
        urls = [f"http://127.0.0.1:{p}/healthz" for p in (health_port, *range(web_port, web_port + 4))]

        def healthy() -> bool:
            assert proc.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            return all(http_json(u)[0] == 200 for u in urls)

        wait_until_sync(healthy, 240, lambda: (tmp_path / "up.log").read_text()[-3000:], every_s=0.5)
        page = http_text(f"http://127.0.0.1:{health_port}/")
        assert "Babelstream" in page and "/static/app.js" in page
        pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
        report = asyncio.run(
            stream_audio(f"ws://127.0.0.1:{ws_port}", pcm, target_lang="pt", translate=True, pace=0, timeout_s=120)
        )
        assert wer(ref, report.text) < 0.3 and report.translations
        stats_url = f"http://127.0.0.1:{web_port + 2}/stats"

        def counted() -> bool:
            windows = (http_json(stats_url)[1] or {}).get("windows") or []
            return sum(w["finals"] for w in windows) >= 1 and sum(w["translations"] for w in windows) >= 1

        wait_until_sync(counted, 60, "the stats worker never counted the session", every_s=0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    # the services share `up`'s process session; the broker runs in one of its own, found by its data dir
    for pgrep in (["pgrep", "-s", str(proc.pid)], ["pgrep", "-f", str(tmp_path / "state")]):
        left = subprocess.run(pgrep, capture_output=True, text=True, timeout=10).stdout.split()
        assert left == [], f"{pgrep}: the broker and services must be stopped"
