"""Transcripts as SRT, WebVTT and JSON Lines (pure functions over results)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict

from schemas.records import Result, ResultKind


def _ts(ms: int, sep: str) -> str:
    h, rem = divmod(max(0, ms), 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms_ = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms_:03d}"


def latest_per_utterance(results: Iterable[Result], kind: ResultKind) -> list[Result]:
    """One result of ``kind`` per utterance (the last one seen), in utterance order."""
    by_utt: dict[tuple[str, int], Result] = {}
    for r in results:
        if r.kind is kind:
            by_utt[(r.session_id, r.utterance_index)] = r
    return [by_utt[k] for k in sorted(by_utt)]


def _cues(results: Iterable[Result], translated: bool) -> list[tuple[int, int, str]]:
    rs = list(results)
    if translated:
        items = latest_per_utterance(rs, ResultKind.TRANSLATION)
        return [(r.audio_start_ms, r.audio_end_ms, r.translation.text if r.translation else "") for r in items]
    cues = []
    for r in latest_per_utterance(rs, ResultKind.FINAL):
        if r.segments:
            cues += [(s.start_ms, s.end_ms, s.text) for s in r.segments if s.text]
        elif r.text:
            cues.append((r.audio_start_ms, r.audio_end_ms, r.text))
    return cues


def to_srt(results: Iterable[Result], translated: bool = False) -> str:
    blocks = [
        f"{i}\n{_ts(a, ',')} --> {_ts(b, ',')}\n{text}\n"
        for i, (a, b, text) in enumerate(_cues(results, translated), 1)
    ]
    return "\n".join(blocks)


def to_vtt(results: Iterable[Result], translated: bool = False) -> str:
    blocks = [f"{_ts(a, '.')} --> {_ts(b, '.')}\n{text}\n" for a, b, text in _cues(results, translated)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_jsonl(results: Iterable[Result]) -> str:
    lines = []
    for r in results:
        if r.kind is ResultKind.REALTIME:
            continue
        d = asdict(r)
        d["kind"] = str(r.kind)
        lines.append(json.dumps(d, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")
