"""A broadcast's captions in one language, sans I/O: what each result is to a viewer of a language, and a
channel's load (the transcript so far) and live results meeting with no gap and no duplicate."""

from __future__ import annotations

import json

import pytest

from gateway.captions import LOAD_BUFFER_MAX, CaptionChannel, LoadOverflow, caption
from schemas.records import ErrorInfo, Result, ResultKind, Translation
from schemas.viewers import CaptionFinal, CaptionRealtime

pytestmark = pytest.mark.unit


def final(i: int, text: str = "hola", lang: str = "es", targets: list[str] | None = None) -> Result:
    t = ["en", "pt"] if targets is None else targets
    return Result("s", i, ResultKind.FINAL, text, language=lang, translate=bool(t), target_langs=t)


def translation(i: int, target: str, text: str, backend: str = "bergamot") -> Result:
    return Result(
        "s",
        i,
        ResultKind.TRANSLATION,
        "hola",
        language="es",
        translate=True,
        target_langs=["en", "pt"],
        translation=Translation("es", target, text, backend),
    )


def interim(i: int, rev: int, text: str = "ho", into: tuple[str, str] | None = None) -> Result:
    t = Translation("es", into[0], into[1], "x") if into else None
    return Result("s", i, ResultKind.REALTIME, text, seq=rev, language="es", translation=t)


def test_a_final_is_its_own_caption_in_the_speakers_language_and_waits_for_its_translation_in_others() -> None:
    f = final(0)
    own = caption(f, "es", 5)
    assert isinstance(own, CaptionFinal) and own.text == "hola" and own.lang == "es" and own.position == 5
    assert caption(f, None, 5) == own  # None: the speaker's language, whatever it is
    assert caption(f, "pt", 5) is None  # its translation follows
    pt = caption(translation(0, "pt", "olá"), "pt", 6)
    assert isinstance(pt, CaptionFinal) and (pt.text, pt.lang, pt.original_text, pt.original_lang) == (
        "olá",
        "pt",
        "hola",
        "es",
    )
    assert pt.translation == "bergamot" and pt.untranslated is None
    assert caption(translation(0, "pt", "olá"), "en", 6) is None
    assert caption(translation(0, "pt", "olá"), "es", 6) is None  # the speaker's language has the final
    assert json.loads(pt.to_json())["segment_id"] == 0  # the deprecated name goes out too


def test_a_final_no_translation_will_follow_is_the_original_saying_why() -> None:
    early = caption(final(0, targets=["en"]), "pt", 1)  # spoken before anyone read Portuguese
    assert isinstance(early, CaptionFinal) and early.text == "hola" and early.untranslated == "not_requested"
    failed = Result(
        "s",
        0,
        ResultKind.ERROR,
        "hola",
        language="es",
        target_lang="pt",
        error=ErrorInfo("translation_failed", "boom"),
    )
    told = caption(failed, "pt", 2)
    assert isinstance(told, CaptionFinal) and told.text == "hola" and told.untranslated == "translation_failed"
    assert caption(failed, "en", 2) is None
    stt = Result("s", 0, ResultKind.ERROR, "", error=ErrorInfo("stt_failed", "x"))
    assert caption(stt, "pt", 3) is None and caption(stt, None, 3) is None


def test_interims_reach_the_viewers_of_their_language() -> None:
    plain = interim(0, 2)
    got = caption(plain, "es", 1)
    assert isinstance(got, CaptionRealtime) and got.text == "ho" and got.revision == 2
    assert caption(plain, "pt", 1) is None
    translated = interim(0, 2, into=("pt", "ol"))
    got = caption(translated, "pt", 2)
    assert isinstance(got, CaptionRealtime) and got.text == "ol" and got.original_text == "ho"
    assert caption(translated, "es", 2) is None and caption(translated, "en", 2) is None
    assert caption(interim(0, 1, text="  "), "es", 3) is None


def test_the_load_and_the_live_results_meet_without_gap_or_duplicate() -> None:
    ch = CaptionChannel("pt")
    # live results arrive while the transcript loads: the load holds 0..3, the live ones 2..5
    assert ch.result(2, final(1)) == [] and ch.result(3, translation(1, "pt", "um")) == []
    assert ch.result(4, final(2)) == [] and ch.result(5, translation(2, "pt", "dois")) == []
    stored = [(0, final(0)), (1, translation(0, "pt", "zero")), (2, final(1)), (3, translation(1, "pt", "um"))]
    history = ch.load(stored)
    assert [json.loads(s.data)["text"] for s in history] == ["zero", "um", "dois"]
    assert [s.position for s in history] == [1, 3, 5]
    assert ch.result(5, translation(2, "pt", "dois")) == []  # had it
    [live] = ch.result(7, translation(3, "pt", "três"))
    assert live.type == "final" and live.position == 7 and json.loads(live.data)["utterance_index"] == 3
    assert [s.position for s in ch.since(3)] == [5, 7] and len(ch.since(-1)) == 4
    assert ch.result(8, interim(4, 0, into=("pt", "q")))[0].type == "realtime"
    assert len(ch.history) == 4  # interims are not kept


def test_a_redelivered_final_is_captioned_once() -> None:
    ch = CaptionChannel("es")
    ch.load([])
    assert len(ch.result(1, final(0))) == 1
    assert ch.result(9, final(0)) == []  # the same final again (a worker's failover), at a later offset


def test_a_channel_holds_a_bounded_number_of_results_while_it_loads() -> None:
    ch = CaptionChannel("es")
    for i in range(LOAD_BUFFER_MAX):
        ch.result(i, final(i))
    assert ch.result(LOAD_BUFFER_MAX, interim(0, 1)) == []  # interims are not held at all
    with pytest.raises(LoadOverflow):
        ch.result(LOAD_BUFFER_MAX + 1, final(0))


def test_history_is_bounded() -> None:
    ch = CaptionChannel("es", history_max=3)
    ch.load([(i, final(i)) for i in range(10)])
    assert [s.position for s in ch.since(-1)] == [7, 8, 9]


def test_one_final_caption_per_utterance_but_a_translation_may_replace_the_untranslated_one() -> None:
    ch = CaptionChannel("pt")
    ch.load([])
    [early] = ch.result(1, final(0, targets=["en"]))  # spoken before anyone read Portuguese
    assert json.loads(early.data)["untranslated"] == "not_requested"
    [late] = ch.result(2, translation(0, "pt", "olá"))  # translated afterwards: it replaces it
    assert json.loads(late.data)["text"] == "olá"
    failed = Result("s", 0, ResultKind.ERROR, "hola", target_lang="pt", error=ErrorInfo("translation_failed", "x"))
    assert ch.result(3, failed) == [] and ch.result(4, translation(0, "pt", "olá")) == []
    assert ch.result(5, translation(1, "pt", "um")) != [] and ch.result(6, failed) == []


def test_the_history_keeps_one_final_caption_per_utterance_a_replacement_last() -> None:
    ch = CaptionChannel("pt")
    ch.load([(1, final(0, targets=["en"])), (2, final(1, targets=["en"]))])
    ch.result(3, translation(0, "pt", "olá"))  # back-filled later
    assert [(json.loads(s.data)["utterance_index"], s.position) for s in ch.history] == [(1, 2), (0, 3)]
    assert [s.position for s in ch.since(2)] == [3]  # a viewer that had both originals gets the replacement


def test_a_channel_knows_whether_every_utterance_begun_has_its_final() -> None:
    ch = CaptionChannel("es")
    ch.load([(1, final(0))])
    assert ch.has_finals_before(1) and not ch.has_finals_before(2)  # utterance 1 is still being decoded
    ch.result(2, final(1))
    assert ch.has_finals_before(2)
    assert CaptionChannel("es").has_finals_before(0)
