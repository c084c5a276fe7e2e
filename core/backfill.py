"""Back-filling a broadcast's language, sans I/O: which of a session's finals no translation into a
language will reach, so the translation worker translates them from the log.

A viewer may first ask for a language at minute 40: the finals before were made without it among their
targets, and so were the few in flight while the speaker's gateway heard of it. The translation worker
reads the session's results from the results topic (from where it last looked, per session and language)
and translates each such final once: one made without the language among its targets, in another
language, with text, and with no translation (or translation error) into the language in the log. What it
writes goes to the results topic like any translation, so the next viewer of the language reads it there.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from schemas.langs import normalize_lang
from schemas.messages import TRANSLATION_ERRORS
from schemas.records import Audience, Result, ResultKind


def untranslated(stored: list[tuple[int, Result]], lang: str) -> list[Result]:
    """The finals among ``stored`` (a session's results, in order) that nothing translates into ``lang``,
    each once, as the requests to translate them (their targets: ``lang``)."""
    done: set[str] = set()
    for _, r in stored:
        if (r.kind is ResultKind.TRANSLATION and r.translation is not None and r.translation.target_lang == lang) or (
            r.kind is ResultKind.ERROR
            and r.error is not None
            and r.error.code in TRANSLATION_ERRORS
            and r.target_lang == lang
        ):
            done.add(r.utterance_id)
    out: dict[str, Result] = {}
    for _, r in stored:
        if (
            r.kind is ResultKind.FINAL
            and r.text.strip()
            and not (r.translate and lang in r.targets)  # the live path translates those
            and normalize_lang(r.language) != lang
            and r.utterance_id not in done
        ):
            out.setdefault(r.utterance_id, replace(r, translate=True, target_lang=lang, target_langs=[lang]))
    return list(out.values())


def _translates(r: Result, lang: str) -> bool:
    """A translation of a final into ``lang``, or the error of one."""
    if r.kind is ResultKind.TRANSLATION:
        return r.translation is not None and r.translation.target_lang == lang
    return (
        r.kind is ResultKind.ERROR
        and r.error is not None
        and r.error.code in TRANSLATION_ERRORS
        and r.target_lang == lang
    )


def watched(audience: Audience, now_ms: int, grace_ms: int, max_langs: int) -> list[str]:
    """The languages an audience record asks for: watched within the grace period (but the original), the
    most watched first, at most ``max_langs`` (a record is a gateway's word, not to be trusted further)."""
    langs = [x for x in audience.langs if x.lang and now_ms - x.watched_at_ms <= grace_ms]
    return [x.lang for x in sorted(langs, key=lambda x: (-x.viewers, x.lang))[:max_langs]]


class Scanned:
    """How far the log of each (session, language) was looked at, so the next look starts there; bounded
    (a forgotten one is looked at from the start again, which finds nothing new to translate)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._upto: OrderedDict[tuple[str, str], int] = OrderedDict()

    def start(self, session_id: str, langs: list[str]) -> int:
        """The offset to read from for these languages of the session (the least of theirs)."""
        return min((self._upto.get((session_id, lang), 0) for lang in langs), default=0)

    def done(self, session_id: str, lang: str, upto: int) -> None:
        key = (session_id, lang)
        self._upto[key] = max(upto, self._upto.get(key, 0))
        self._upto.move_to_end(key)
        while len(self._upto) > self.max_entries:
            self._upto.popitem(last=False)
