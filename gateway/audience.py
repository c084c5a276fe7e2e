"""Who watches which broadcast in which language, sans I/O: this gateway's viewers as records to store,
and every gateway's records as the languages each broadcast is translated into.

Viewers of one broadcast may be on any gateway, and its speaker on another: each gateway writes its own
viewers of a broadcast, by language, to the compacted audiences topic (:class:`LocalAudience`: when
they change, and every ``refresh_ms``), and every gateway follows that topic (:class:`AudienceIndex`).
The speaker's gateway asks the STT and translation workers for every language watched anywhere in the
last ``grace_ms`` (so a language whose viewers all left, or whose gateway died, stops being translated
after that), at most ``max_langs`` of them. The speaker's own language (:data:`schemas.viewers.ORIGINAL`)
is counted but never translated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.records import Audience, WatchedLang, audience_key
from schemas.viewers import ORIGINAL


@dataclass
class _Watched:
    session_id: str
    viewers: dict[str, int] = field(default_factory=dict)  # lang -> viewers here now
    watched_at_ms: dict[str, int] = field(default_factory=dict)  # lang -> last watched here
    changed: bool = True
    written_ms: int = 0


@dataclass(frozen=True)
class Tombstone:
    key: str  # nobody watches this broadcast on this gateway any more
    session_id: str


class LocalAudience:
    """This gateway's viewers, by broadcast and language, and the audience records to write for them."""

    def __init__(self, gateway_id: str, grace_ms: int, refresh_ms: int) -> None:
        self.gateway_id = gateway_id
        self.grace_ms = grace_ms
        self.refresh_ms = refresh_ms
        self._by_broadcast: dict[str, _Watched] = {}

    def joined(self, broadcast_id: str, session_id: str, lang: str | None, now_ms: int) -> None:
        w = self._by_broadcast.setdefault(broadcast_id, _Watched(session_id))
        code = lang or ORIGINAL
        w.viewers[code] = w.viewers.get(code, 0) + 1
        w.watched_at_ms[code] = now_ms
        w.changed = True

    def left(self, broadcast_id: str, lang: str | None, now_ms: int) -> None:
        w = self._by_broadcast.get(broadcast_id)
        code = lang or ORIGINAL
        if w is None or w.viewers.get(code, 0) <= 0:
            return
        w.viewers[code] -= 1
        w.watched_at_ms[code] = now_ms
        w.changed = True

    def touch(self, broadcast_id: str) -> None:
        """Write the broadcast's record again now (a final its viewers here read untranslated: the
        translation workers look again)."""
        w = self._by_broadcast.get(broadcast_id)
        if w is not None:
            w.changed = True

    def changed_all(self) -> None:
        """Every record is to be written again (the last writes may have failed)."""
        for w in self._by_broadcast.values():
            w.changed = True

    def langs(self, broadcast_id: str) -> list[str]:
        """The languages read here now or within the grace period (but the speaker's own): counted
        against MAX_BROADCAST_LANGS before the others' gateways have read their record."""
        w = self._by_broadcast.get(broadcast_id)
        return sorted(code for code in (w.viewers if w else {}) if code != ORIGINAL)

    def viewers(self, broadcast_id: str) -> int:
        w = self._by_broadcast.get(broadcast_id)
        return sum(w.viewers.values()) if w else 0

    def due(self, now_ms: int) -> list[Audience | Tombstone]:
        """The records to write now: changed audiences, and every one not written for ``refresh_ms`` (so
        the others see this gateway is alive); a language nobody here watched for ``grace_ms`` is dropped,
        and a broadcast left with none is tombstoned."""
        out: list[Audience | Tombstone] = []
        for broadcast_id, w in list(self._by_broadcast.items()):
            for code in [c for c, n in w.viewers.items() if n <= 0 and now_ms - w.watched_at_ms[c] > self.grace_ms]:
                del w.viewers[code], w.watched_at_ms[code]
                w.changed = True
            if not w.viewers:
                del self._by_broadcast[broadcast_id]
                out.append(Tombstone(audience_key(broadcast_id, self.gateway_id), w.session_id))
                continue
            if not w.changed and now_ms - w.written_ms < self.refresh_ms:
                continue
            for code, n in w.viewers.items():
                if n > 0:
                    w.watched_at_ms[code] = now_ms  # watched until now
            langs = [WatchedLang(c, n, w.watched_at_ms[c]) for c, n in sorted(w.viewers.items())]
            out.append(Audience(broadcast_id, w.session_id, self.gateway_id, langs, now_ms))
            w.changed, w.written_ms = False, now_ms
        return out


class AudienceIndex:
    """Every gateway's audience records (the topic, followed), by session."""

    def __init__(self, grace_ms: int, max_langs: int) -> None:
        self.grace_ms = grace_ms
        self.max_langs = max_langs
        self._records: dict[str, Audience] = {}  # by key
        self._by_session: dict[str, set[str]] = {}

    def apply(self, key: str, audience: Audience | None) -> str | None:
        """A record (None: a tombstone) read from the topic; returns the session whose audience changed."""
        old = self._records.pop(key, None)
        if old is not None:
            self._by_session.get(old.session_id, set()).discard(key)
        if audience is None:
            return old.session_id if old else None
        self._records[key] = audience
        self._by_session.setdefault(audience.session_id, set()).add(key)
        return audience.session_id

    def langs(self, session_id: str, now_ms: int) -> list[str]:
        """The languages the session's broadcast is translated into: watched somewhere within the grace
        period, the most watched first, at most ``max_langs``."""
        viewers: dict[str, int] = {}
        for key in self._by_session.get(session_id, ()):
            for x in self._records[key].langs:
                if x.lang != ORIGINAL and now_ms - x.watched_at_ms <= self.grace_ms:
                    viewers[x.lang] = viewers.get(x.lang, 0) + x.viewers
        return sorted(viewers, key=lambda lang: (-viewers[lang], lang))[: self.max_langs]

    def viewers(self, session_id: str, now_ms: int, except_gateway: str | None = None) -> int:
        """Viewers of the session's broadcast on every gateway whose record is fresh (within the grace
        period), but ``except_gateway`` (this one: it counts its own as they come)."""
        return sum(
            x.viewers
            for key in self._by_session.get(session_id, ())
            if (a := self._records[key]).gateway_id != except_gateway and now_ms - a.updated_at_ms <= self.grace_ms
            for x in a.langs
        )
