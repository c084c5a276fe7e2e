"""Back-filling a broadcast's language, sans I/O: the finals nothing translates into a language are
found in the log once each, and the log is looked at again only from where it was left."""

from __future__ import annotations

import pytest

from core.backfill import Scanned, untranslated, watched
from schemas.records import Audience, ErrorInfo, Result, ResultKind, Translation, WatchedLang

pytestmark = pytest.mark.unit


def final(i: int, targets: list[str] | None = None, lang: str = "en", text: str = "hello") -> Result:
    t = targets or []
    return Result("s", i, ResultKind.FINAL, text, language=lang, translate=bool(t), target_langs=t)


def test_the_finals_no_translation_reaches_are_found_once_each() -> None:
    stored = [
        (0, final(0)),  # before anyone read Portuguese
        (1, final(1, targets=["pt"])),  # the live path translates it
        (2, final(2)),
        (3, Result("s", 2, ResultKind.TRANSLATION, "hello", translation=Translation("en", "pt", "olá", "m"))),
        (4, final(3)),
        (5, Result("s", 3, ResultKind.ERROR, "", target_lang="pt", error=ErrorInfo("translation_failed", "x"))),
        (6, final(4, lang="pt")),  # already in Portuguese
        (7, final(5, text="  ")),
        (8, final(6)),
        (9, final(6)),  # redelivered
    ]
    wanted = untranslated(stored, "pt")
    assert [r.utterance_index for r in wanted] == [0, 6]
    assert all(r.targets == ["pt"] and r.translate for r in wanted)
    assert [r.utterance_index for r in untranslated(stored, "en")] == [4]  # the others are English


def test_the_log_is_looked_at_again_from_where_it_was_left() -> None:
    scanned = Scanned(max_entries=2)
    assert scanned.start("s", ["pt"]) == 0
    scanned.done("s", "pt", 10)
    scanned.done("s", "fr", 4)
    assert scanned.start("s", ["pt"]) == 10 and scanned.start("s", ["pt", "fr"]) == 4
    scanned.done("s", "pt", 8)  # never backwards
    assert scanned.start("s", ["pt"]) == 10
    scanned.done("t", "pt", 3)  # bounded: the oldest is forgotten (looked at from the start again)
    assert scanned.start("s", ["fr"]) == 0


def test_an_audience_asks_for_the_languages_watched_within_the_grace_period() -> None:
    a = Audience("b", "s", "g", [WatchedLang("", 3, 100), WatchedLang("pt", 1, 100), WatchedLang("fr", 0, 10)])
    assert watched(a, 100, 50, 8) == ["pt"]
    assert watched(a, 60, 50, 8) == ["pt", "fr"]
    assert watched(a, 60, 50, 1) == ["pt"]  # the most watched, within MAX_BROADCAST_LANGS
