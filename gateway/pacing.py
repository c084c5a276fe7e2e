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


class KeyPacers:
    """A session's own pacer, and one for all sessions of each key together (KEY_REALTIME_FACTOR)."""

    def __init__(self, session_factor: float, key_factor: float, burst_s: float) -> None:
        self.session_factor = session_factor
        self.key_factor = key_factor
        self.burst_s = burst_s
        self._keys: dict[str, AudioPacer] = {}

    def delay(self, own: AudioPacer | None, key: str | None, audio_s: float, now_s: float) -> tuple[float, str]:
        """Seconds to hold ``audio_s`` of a session's audio back (``key``: its key's name, None when it
        has none), and the limit that holds it, in words."""
        delay_s = own.take(audio_s, now_s) if own is not None else 0.0
        limit = f"{self.session_factor:g}x real time"
        if key is None or not self.key_factor:
            return delay_s, limit
        pacer = self._keys.setdefault(key, AudioPacer(self.key_factor, self.burst_s))
        if (key_delay_s := pacer.take(audio_s, now_s)) > delay_s:
            return key_delay_s, f"{self.key_factor:g}x real time for all sessions of this key"
        return delay_s, limit
