"""Transcripts as SRT, WebVTT and JSON Lines (pure functions over results)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict

from schemas import subtitles
from schemas.records import Result, ResultKind
from schemas.subtitles import Cue, transcript_cues


def latest_per_utterance(results: Iterable[Result], kind: ResultKind) -> list[Result]:
    """One result of ``kind`` per utterance (the last one seen), in utterance order."""
    by_utt: dict[tuple[str, int], Result] = {}
    for r in results:
        if r.kind is kind:
            by_utt[(r.session_id, r.utterance_index)] = r
    return [by_utt[k] for k in sorted(by_utt)]


def _cues(results: Iterable[Result], translated: bool) -> list[Cue]:
    rs = list(results)
    if not translated:
        return transcript_cues(latest_per_utterance(rs, ResultKind.FINAL))
    items = latest_per_utterance(rs, ResultKind.TRANSLATION)
    return [Cue(r.audio_start_ms, r.audio_end_ms, r.translation.text if r.translation else "") for r in items]


def to_srt(results: Iterable[Result], translated: bool = False) -> str:
    return subtitles.to_srt(_cues(results, translated))


def to_vtt(results: Iterable[Result], translated: bool = False) -> str:
    return subtitles.to_vtt(_cues(results, translated))


def to_jsonl(results: Iterable[Result]) -> str:
    lines = []
    for r in results:
        if r.kind is ResultKind.REALTIME:
            continue
        d = asdict(r)
        d["kind"] = str(r.kind)
        lines.append(json.dumps(d, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")
