"""A tiny Marian-style translation model built in the test: random weights through ``ctranslate2.specs``
and a SentencePiece model trained on a few sentences, laid out as ``CT2_MODELS_DIR`` expects
(``opus-mt-<src>-<tgt>/`` with ``model.bin``, ``source.spm``, ``target.spm``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

SENTENCES = [
    "the house is on the hill",
    "a cat sleeps in the sun",
    "we read books at night",
    "the river runs to the sea",
    "she sings a song for us",
    "they walk along the road",
    "bread and water on the table",
    "open the door please",
]
D_MODEL, FFN = 16, 32


def _shape(name: str, vocab: int) -> tuple[int, ...]:
    if name.endswith(("embeddings_0/weight", "embeddings/weight", "projection/weight")):
        return (vocab, D_MODEL)
    if name.endswith(("gamma", "beta")):
        return (D_MODEL,)
    if "self_attention/linear_0" in name:
        return (3 * D_MODEL, D_MODEL)  # fused query, key, value
    if "/attention/linear_1" in name:
        return (2 * D_MODEL, D_MODEL)  # fused key, value of the encoder output
    if "ffn/linear_0" in name:
        return (FFN, D_MODEL)
    if "ffn/linear_1" in name:
        return (D_MODEL, FFN)
    return (D_MODEL, D_MODEL)


def _set(spec: object, name: str, value: np.ndarray) -> None:
    obj = spec
    *path, leaf = name.split("/")
    for part in path:
        base, _, index = part.rpartition("_")
        if index.isdigit() and isinstance(getattr(obj, base, None), list):
            obj = getattr(obj, base)[int(index)]
        else:
            obj = getattr(obj, part)
    setattr(obj, leaf, value)


def build_marian(models_dir: Path, source: str, target: str, seed: int = 0) -> Path:
    import ctranslate2
    import sentencepiece as spm

    out = models_dir / f"opus-mt-{source}-{target}"
    sp_model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 4),
        model_writer=sp_model,
        vocab_size=40,
        model_type="unigram",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=sp_model.getvalue())
    vocab = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    rng = np.random.default_rng(seed)
    spec = ctranslate2.specs.TransformerSpec.from_config(1, 2)
    for name, value in spec.variables().items():
        if value is None:
            shape = _shape(name, len(vocab))
            weight = np.ones(shape) if name.endswith("gamma") else rng.standard_normal(shape) * 0.1
            _set(spec, name, weight.astype(np.float32))
    spec.register_source_vocabulary(vocab)
    spec.register_target_vocabulary(vocab)

    class Built(ctranslate2.converters.Converter):
        def _load(self) -> object:
            return spec

    Built().convert(str(out), force=True)
    for name in ("source.spm", "target.spm"):  # after convert(), which empties the folder
        (out / name).write_bytes(sp_model.getvalue())
    return out
