"""CT2_MODELS_DIR: a Marian model converted to CTranslate2 (a tiny one built here) is found by its folder
name, loaded, and translates batches; the router routes its pair to it, and pivots through English."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engines.translate import CTranslate2MarianBackend, TranslationRouter
from core.settings import load_settings
from tests.marian import SENTENCES, build_marian

pytestmark = pytest.mark.timeout(120)


def test_a_model_folder_is_found_loaded_and_translates_batches(tmp_path: Path) -> None:
    build_marian(tmp_path, "de", "fr")
    backend = CTranslate2MarianBackend(tmp_path)
    assert backend.supports("de", "fr") and not backend.supports("fr", "de")
    texts = SENTENCES[:3]
    together = backend.translate(texts, "de", "fr")
    alone = [backend.translate([t], "de", "fr")[0] for t in texts]
    assert together == alone  # batching changes nothing (random weights: the words mean nothing)
    assert len(together) == 3 and all(isinstance(t, str) and t.strip() for t in together)
    assert "</s>" not in " ".join(together) and "▁" not in " ".join(together)  # detokenised


def test_the_router_uses_the_folder_for_its_pair_and_as_a_pivot(tmp_path: Path) -> None:
    build_marian(tmp_path, "en", "de")
    router = TranslationRouter.from_settings(load_settings(ct2_models_dir=tmp_path))
    assert router.route("en", "de").name == "ctranslate2"
    assert router.route("es", "de").name == "whisper+ctranslate2"  # Spanish speech, through English
    texts, backend = router.translate_batch(["the house is on the hill", "open the door please"], "en", "de")
    assert backend == "ctranslate2" and len(texts) == 2
    assert "de" in router.reachable("fr")  # the web page and GET /languages offer it now
