"""Audio rate limits, sans I/O: a token bucket in seconds of audio.

A client may send ``burst_s`` of audio at once (a file streamed as fast as possible, a reconnect that
catches up), then at most ``factor`` x real time. :meth:`AudioPacer.take` says how long to wait before the
frame is accepted; the server waits that long before reading the next frame, so TCP back-pressure slows a
greedy client down while every other client goes on at full speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AudioPacer:
    factor: float  # accepted audio seconds per wall-clock second, once the burst is spent
    burst_s: float
    level_s: float = field(init=False)  # audio seconds that may be accepted right now
    at_s: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.level_s = self.burst_s

    def take(self, audio_s: float, now_s: float) -> float:
        """Account for ``audio_s`` of audio arriving at ``now_s``; returns the seconds to wait first."""
        if self.at_s is not None:
            self.level_s = min(self.burst_s, self.level_s + (now_s - self.at_s) * self.factor)
        self.at_s = now_s
        self.level_s -= audio_s
        return 0.0 if self.level_s >= 0 else -self.level_s / self.factor
