"""A broadcast's captions in one language, sans I/O: results in (with their position in the results
topic), captions out, each made and serialised once for every viewer of the language.

A :class:`CaptionChannel` is one language of one broadcast on one gateway. Its first viewer makes it
*load* the transcript so far from the results topic; meanwhile live results wait in it, and those the
load already held (by position: a session's results are in one partition, in order) are skipped, so the
seam has no gap and no duplicate. From then on it keeps its finals in memory (:attr:`history`, up to
``history_max``): the next viewer of the language reads them there, not from Kafka, and a viewer that
reconnects with the last position it has gets the finals after it.

What a result is to a viewer of language ``lang`` (:func:`caption`): an interim in its language (the
speaker's, or translated into it); a final in the speaker's language when that is the viewer's; else the
final's translation into it, or, when none will come (the final was made before anyone watched in that
language, or its translation failed), the original with ``untranslated`` saying why. Each utterance gets
one final caption, but an untranslated one may be followed by its translation (a later final caption
of the same ``utterance_index`` replaces the earlier); a result delivered twice is captioned once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from schemas.errors import BabelstreamError
from schemas.langs import normalize_lang
from schemas.messages import TRANSLATION_ERRORS
from schemas.records import Result, ResultKind
from schemas.viewers import CaptionFinal, CaptionRealtime, ViewerOut

SEEN_MAX = 8192  # utterances remembered per channel to caption each once (a worker's failover redelivers)
LOAD_BUFFER_MAX = 100_000  # live results held while the transcript so far loads


@dataclass(frozen=True)
class Sent:
    """A message as every viewer of a channel gets it: serialised once."""

    type: str
    data: str  # its JSON
    position: int | None = None  # a caption's: the SSE event id
    untranslated: str | None = None  # a final caption's reason for being the original


def caption(r: Result, lang: str | None, position: int) -> CaptionRealtime | CaptionFinal | None:
    """What a viewer reading ``lang`` (None: the speaker's language) gets for result ``r``, or nothing."""
    spoken = normalize_lang(r.language) if r.language else None
    own = lang is None or lang == spoken
    common = dict(
        position=position,
        utterance_index=r.utterance_index,
        original_text=r.text,
        original_lang=spoken,
        audio_start_ms=r.audio_start_ms,
        audio_end_ms=r.audio_end_ms,
    )
    t = r.translation
    if r.kind is ResultKind.REALTIME:
        if t is None and own and r.text.strip():
            return CaptionRealtime(**common, text=r.text, lang=spoken, revision=r.seq)
        if t is not None and lang is not None and t.target_lang == lang and not own:
            return CaptionRealtime(**common, text=t.text, lang=lang, revision=r.seq)
        return None
    if r.kind is ResultKind.FINAL:
        if own:
            return CaptionFinal(**common, text=r.text, lang=spoken)
        if not (r.translate and lang in r.targets):  # no translation into it will come
            return CaptionFinal(**common, text=r.text, lang=spoken, untranslated="not_requested")
        return None  # its TRANSLATION (or ERROR) follows
    if r.kind is ResultKind.TRANSLATION and t is not None and t.target_lang == lang and not own:
        return CaptionFinal(**{**common, "original_lang": spoken}, text=t.text, lang=lang, translation=t.backend)
    if (
        r.kind is ResultKind.ERROR
        and r.error is not None
        and r.error.code in TRANSLATION_ERRORS
        and r.target_lang == lang
        and not own
    ):
        return CaptionFinal(**common, text=r.text, lang=spoken, untranslated=r.error.code)
    return None


def sent(msg: ViewerOut) -> Sent:
    """A message serialised, with its position (an SSE event's id) when it has one."""
    position = getattr(msg, "position", None)
    reason = msg.untranslated if isinstance(msg, CaptionFinal) else None
    return Sent(msg.type, msg.to_json(), position if isinstance(position, int) else None, reason)


class LoadOverflow(BabelstreamError):
    """More live results arrived while the transcript loaded than a channel holds."""


class CaptionChannel:
    """One language of one broadcast on this gateway (see the module's docstring)."""

    def __init__(self, lang: str | None, history_max: int = 20_000) -> None:
        self.lang = lang
        self.loaded = False
        self.position = -1  # of the last result taken in
        self.history_max = history_max
        # the final caption of each utterance, in position order (a replacement moves to the end)
        self._history: OrderedDict[str, Sent] = OrderedDict()
        self._waiting: list[tuple[int, Result]] = []  # live results that came during the load
        # utterance id -> (1 untranslated or 2 final, its utterance index), the newest SEEN_MAX
        self._captioned: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._forgot = False  # some were let go of (past the bound): the end of a broadcast waits no more

    def result(self, position: int, r: Result) -> list[Sent]:
        """A live result: what this language's live viewers get now (nothing while loading)."""
        if not self.loaded:
            if r.kind is not ResultKind.REALTIME:  # interims of the loading moment are not worth holding
                if len(self._waiting) >= LOAD_BUFFER_MAX:
                    raise LoadOverflow(f"{len(self._waiting)} results arrived while the transcript loaded")
                self._waiting.append((position, r))
            return []
        return self._take(position, r)

    def load(self, stored: list[tuple[int, Result]]) -> list[Sent]:
        """The transcript so far (the session's results up to the topic's end, in position order), then the
        results that waited: the history to give the viewers who waited for it."""
        waiting, self._waiting = self._waiting, []
        for position, r in stored:
            if r.kind is not ResultKind.REALTIME:
                self._take(position, r)
        self.loaded = True
        for position, r in waiting:
            self._take(position, r)
        return self.history

    @property
    def history(self) -> list[Sent]:
        """The final caption of each utterance kept, in position order."""
        return list(self._history.values())

    def has_finals_before(self, next_index: int) -> bool:
        """Whether every utterance before ``next_index`` has its final caption here (or they are past what
        a channel remembers)."""
        captioned = {index for _, index in self._captioned.values()}
        return self._forgot or all(i in captioned for i in range(next_index))

    def since(self, after: int) -> list[Sent]:
        """The finals after position ``after`` (what a joining or reconnecting viewer gets first)."""
        if after < 0:
            return self.history
        return [s for s in self._history.values() if s.position is not None and s.position > after]

    def _take(self, position: int, r: Result) -> list[Sent]:
        if position <= self.position:
            return []  # the load had it already
        self.position = position
        msg = caption(r, self.lang, position)
        if msg is None:
            return []
        if isinstance(msg, CaptionFinal):
            # one final caption per utterance; an untranslated one may be followed by its translation
            # (which then replaces it), never the other way round, and a redelivered one is dropped
            rank = 1 if msg.untranslated else 2
            if self._captioned.get(r.utterance_id, (0, 0))[0] >= rank:
                return []
            self._captioned[r.utterance_id] = (rank, r.utterance_index)
            self._captioned.move_to_end(r.utterance_id)
            while len(self._captioned) > SEEN_MAX:
                self._captioned.popitem(last=False)
                self._forgot = True
            item = sent(msg)
            self._history.pop(r.utterance_id, None)
            self._history[r.utterance_id] = item
            while len(self._history) > self.history_max:
                self._history.popitem(last=False)
            return [item]
        return [sent(msg)]
