"""The Grafana dashboard asks only for metrics the running services export: every metric name in every
panel's PromQL is read from the gateway's and the workers' /metrics of a live stack."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.stack import Stack, http_text
from tests.waiting import wait_until_sync

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "grafana-dashboard.json"
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")


def exported(exposition: str) -> set[str]:
    """Every series name an exposition can hold: its samples, and its families' declared names (a
    labelled metric that saw nothing yet shows only its HELP and TYPE lines)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE ") or line.startswith("# HELP "):
            family = line.split()[2]
            names |= {family + s for s in SUFFIXES}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_dashboard_expression_names_exported_metrics(stack: Stack) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    services = {svc.name: svc for svc in stack.services}
    assert {"gateway", "stt", "translate"} <= set(services)
    available = set().union(*(exported(http_text(f"{svc.base_url}/metrics")) for svc in services.values()))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        used = set(re.findall(r"\bbabelstream_[a-z0-9_]+", expr))
        assert used, f"no Babelstream metric in {expr!r}"
        assert used <= available, f"{expr!r} names {used - available}, which no service exports"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("sessions", "lag", "latency", "engine", "errors", "dead letters"):
        assert topic in titles
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])


def test_workers_report_their_groups_lag_per_owned_partition(stack: Stack) -> None:
    stt = next(svc for svc in stack.services if svc.name == "stt")

    def lag_samples() -> list[str]:
        return [
            line
            for line in http_text(f"{stt.base_url}/metrics").splitlines()
            if line.startswith(f'babelstream_consumer_lag{{group="{stack.prefix}-stt"')
        ]

    def audio_lag() -> list[str]:
        lines = [s for s in lag_samples() if f'topic="{stack.prefix}.audio.v1"' in s]
        return lines if len(lines) == 4 else []  # the stack's AUDIO_PARTITIONS, all owned here

    audio = wait_until_sync(audio_lag, 30, lambda: f"not 4 audio partitions' lag: {lag_samples()}", every_s=0.5)
    assert all(float(s.rsplit(" ", 1)[1]) >= 0 for s in audio)
