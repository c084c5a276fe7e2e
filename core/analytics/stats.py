"""Windowed pipeline statistics (pure logic): words per minute, latency percentiles, languages, errors.

A window is a JSON-serialisable dict, so it can live in a Faust table (changelog-backed)."""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas.messages import TRANSLATION_ERRORS
from schemas.records import Result, ResultKind

MAX_SAMPLES = 2000  # latency samples kept per window (a uniform prefix is enough for percentiles)
MAX_COUNTED = 50_000  # result ids remembered per window, so a redelivered result is counted once


def window_start(ts_ms: int, window_s: int) -> int:
    return ts_ms - ts_ms % (window_s * 1000)


def empty_window(start_ms: int, window_s: int) -> dict[str, Any]:
    return {
        "start_ms": start_ms,
        "window_s": window_s,
        "finals": 0,
        "interims": 0,
        "translations": 0,
        "words": 0,
        "audio_s": 0.0,
        "languages": {},
        "errors": {},
        "sessions": [],
        "latency_ms": [],
        "counted": [],
    }


def result_key(r: Result) -> str:
    """What makes a result distinct: results are at-least-once and ``utterance_id`` is the idempotency key."""
    if r.kind is ResultKind.TRANSLATION and r.translation is not None:
        return f"{r.utterance_id}>{r.translation.target_lang}"
    if r.kind is ResultKind.ERROR:  # a translation's error is one per target
        code = r.error.code if r.error else "unknown"
        return f"{r.utterance_id}!{code}>{r.target_lang}" if code in TRANSLATION_ERRORS else f"{r.utterance_id}!{code}"
    return f"{r.utterance_id}#{r.kind}"


def add_result(w: dict[str, Any], r: Result) -> dict[str, Any]:
    w = dict(w)
    if r.kind is ResultKind.REALTIME:
        w["interims"] += 1
        return w
    key = result_key(r)
    counted = w.get("counted", [])  # windows stored before this field existed have none
    if key in counted:
        return w  # redelivered (worker failover, agent restart): already counted in this window
    if len(counted) < MAX_COUNTED:
        w["counted"] = [*counted, key]
    if r.kind is ResultKind.ERROR:
        code = r.error.code if r.error else "unknown"
        w["errors"] = {**w["errors"], code: w["errors"].get(code, 0) + 1}
        return w
    if r.kind is ResultKind.TRANSLATION:
        w["translations"] += 1
        return w
    w["finals"] += 1
    w["words"] += len(r.text.split())
    w["audio_s"] = round(w["audio_s"] + (r.audio_end_ms - r.audio_start_ms) / 1000, 3)
    lang = r.language or "unknown"
    w["languages"] = {**w["languages"], lang: w["languages"].get(lang, 0) + 1}
    if r.session_id not in w["sessions"] and len(w["sessions"]) < 10_000:
        w["sessions"] = [*w["sessions"], r.session_id]
    if r.audio_created_at_ms and len(w["latency_ms"]) < MAX_SAMPLES:
        w["latency_ms"] = [*w["latency_ms"], max(0, r.created_at_ms - r.audio_created_at_ms)]
    return w


def summarize(w: dict[str, Any]) -> dict[str, Any]:
    lat = np.array(w["latency_ms"], dtype=float)
    pct = {f"p{p}": float(np.percentile(lat, p)) for p in (50, 90, 99)} if lat.size else {}
    return {
        "start_ms": w["start_ms"],
        "window_s": w["window_s"],
        "finals": w["finals"],
        "interims": w["interims"],
        "translations": w["translations"],
        "words": w["words"],
        "audio_s": w["audio_s"],
        "words_per_min": round(w["words"] / (w["window_s"] / 60), 2),
        "sessions": len(w["sessions"]),
        "languages": w["languages"],
        "errors": w["errors"],
        "final_latency_ms": pct,
    }
