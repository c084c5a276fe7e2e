"""Which interim (REALTIME) results the translation worker translates, sans I/O.

Interims change every second or so and most are replaced before anyone reads them, so per session at
most one is translated every ``interval_ms`` (INTERIM_TRANSLATION_INTERVAL_MS), only the newest revision
of an utterance among those waiting together, and none once the utterance's FINAL has been seen (its
translation is on the way). Interims whose route goes through the speech (Whisper's English) are not
translated: only finals carry that English.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from schemas.records import Result, ResultKind


@dataclass
class InterimThrottle:
    interval_ms: int = 1000
    max_entries: int = 10_000
    _last_ms: OrderedDict[str, int] = field(default_factory=OrderedDict)  # session -> last translated at
    _finished: OrderedDict[str, None] = field(default_factory=OrderedDict)  # utterance ids with a FINAL

    def select(self, results: list[Result], now_ms: int) -> list[Result]:
        """Of a batch of results (in topic order), the interims to translate now."""
        for r in results:
            if r.kind is ResultKind.FINAL:
                self._remember(self._finished, r.utterance_id, None)
        newest: dict[str, Result] = {}
        for r in results:
            if r.kind is ResultKind.REALTIME and r.translation is None and r.utterance_id not in self._finished:
                # (an interim that carries a translation is this worker's own output, read back)
                newest[r.utterance_id] = r  # a later revision replaces an earlier one
        chosen = []
        for r in newest.values():
            last = self._last_ms.get(r.session_id)
            if self.interval_ms <= 0 or (last is not None and now_ms - last < self.interval_ms):
                continue
            self._remember(self._last_ms, r.session_id, now_ms)
            chosen.append(r)
        return chosen

    def _remember(self, notes: OrderedDict[str, Any], key: str, value: object) -> None:
        notes[key] = value
        notes.move_to_end(key)
        while len(notes) > self.max_entries:
            notes.popitem(last=False)
