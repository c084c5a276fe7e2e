"""Where to cut an utterance that its connection left inside speech, sans I/O.

A gateway that dies mid-utterance (or a client whose network drops) leaves the utterance's audio ending
wherever the connection stopped, often inside a word; the resumed connection's first utterance begins
with the rest of that word. Decoded apart, both halves come out wrong ("prudently" becomes "proof" and
"and is"). :func:`seam_cut_ms` says how much of the cut utterance to keep: up to the latest quiet moment
in its last ``search_ms`` (a gap between words), the rest being carried into the resumed utterance and
decoded with it; no quiet moment, or too little before it: carry it all (the whole sentence is decoded
once, after the resume). An utterance that already ends quietly was cut between words: keep it whole.

Measured by ``bench.seam`` (LibriVox sentences cut in the middle of every other word, Whisper base):
decoded apart, the halves had many times the uncut sentences' word errors; cut here, as few as uncut.
"""

from __future__ import annotations

import numpy as np

from schemas.records import AUDIO_SAMPLES_PER_MS


def window_power(audio: np.ndarray, window_ms: int, hop_ms: int) -> np.ndarray:
    """Mean power of each ``window_ms`` window, every ``hop_ms``."""
    w, hop = window_ms * AUDIO_SAMPLES_PER_MS, hop_ms * AUDIO_SAMPLES_PER_MS
    if len(audio) < w:
        return np.zeros(0)
    sums = np.concatenate(([0.0], np.cumsum(audio.astype(np.float64) ** 2)))
    starts = np.arange(0, len(audio) - w + 1, hop)
    return (sums[starts + w] - sums[starts]) / w


def seam_cut_ms(
    audio: np.ndarray,
    *,
    search_ms: int = 3000,
    window_ms: int = 120,
    hop_ms: int = 10,
    quiet_ratio: float = 0.01,
    min_head_ms: int = 1000,
) -> int | None:
    """How many ms of ``audio`` (16 kHz float) to keep when its connection left it: None, all of it (it
    ends quietly: no word was cut); else the middle of the latest quietest window of the last
    ``search_ms`` (0: none is quiet, or it leaves less than ``min_head_ms``: carry it all). Quiet: power
    at most ``quiet_ratio`` of the utterance's loud level (its 90th percentile window), -20 dB by
    default."""
    power = window_power(audio, window_ms, hop_ms)
    if len(power) == 0:
        return 0
    quiet = quiet_ratio * float(np.percentile(power, 90))
    if power[-1] <= quiet:
        return None
    first = max(0, len(power) - search_ms // hop_ms)
    recent = power[first:]
    latest = len(recent) - 1 - int(np.argmin(recent[::-1]))  # the latest of equal minima
    if recent[latest] > quiet:
        return 0
    cut_ms = (first + latest) * hop_ms + window_ms // 2
    return cut_ms if cut_ms >= min_head_ms else 0
