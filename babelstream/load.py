"""Load generation: N concurrent clients stream the same audio; latency percentiles of what came back."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from babelstream.client import StreamReport, stream_audio


@dataclass(frozen=True)
class LoadSummary:
    clients: int
    failed: int
    utterances: int
    final_after_end_s: dict[str, float]
    first_interim_s: dict[str, float]
    overloaded: int


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.array(values)
    return {f"p{p}": float(np.percentile(a, p)) for p in (50, 90, 99)}


def end_to_final_s(report: StreamReport) -> list[float]:
    """Per utterance: from the gateway's utterance_end (speech over) to the final's arrival."""
    ends = {m["utterance_index"]: m["_t"] for m in report.of_type("utterance_end") if "_t" in m}
    return [m["_t"] - ends[m["utterance_index"]] for m in report.of_type("final") if m["utterance_index"] in ends]


def start_to_interim_s(report: StreamReport) -> list[float]:
    """Per utterance: from utterance_start (speech detected) to its first interim."""
    starts = {m["utterance_index"]: m["_t"] for m in report.of_type("utterance_start") if "_t" in m}
    firsts: dict[int, float] = {}
    for m in report.of_type("realtime"):
        firsts.setdefault(m["utterance_index"], m["_t"])
    return [t - starts[s] for s, t in firsts.items() if s in starts]


async def run_load(
    url: str,
    pcm: bytes,
    clients: int,
    *,
    pace: float = 1.0,
    stagger_s: float = 0.05,
    timeout_s: float = 300.0,
    **kw: object,
) -> tuple[list[StreamReport], int]:
    async def one(i: int) -> StreamReport:
        await asyncio.sleep(i * stagger_s)
        return await stream_audio(url, pcm, pace=pace, timeout_s=timeout_s, **kw)  # type: ignore[arg-type]

    results = await asyncio.gather(*(one(i) for i in range(clients)), return_exceptions=True)
    reports = [r for r in results if isinstance(r, StreamReport)]
    return reports, len(results) - len(reports)


def summarize(reports: list[StreamReport], failed: int) -> LoadSummary:
    finals = [x for r in reports for x in end_to_final_s(r)]
    interims = [x for r in reports for x in start_to_interim_s(r)]
    overloaded = sum(1 for r in reports for m in r.of_type("error") if m.get("code") == "overloaded")
    return LoadSummary(
        len(reports) + failed,
        failed,
        sum(len(r.finals) for r in reports),
        percentiles(finals),
        percentiles(interims),
        overloaded,
    )
