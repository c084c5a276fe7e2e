"""Whisper through CTranslate2, batched: pure compute, callers run it in a thread.

Utterances of up to 30 s (the worker's are at most ``MAX_UTTERANCE_S``) are decoded here directly on the
CTranslate2 model that faster-whisper loads, so that

* several decodes (different sessions) share one encoder pass and one ``generate`` call (a batch);
* language detection reads an encoder pass over the whole 30 s window (in a shorter one it is out of
  Whisper's distribution and flips with the CPU's rounding), made only for the items without a language;
* the encoder may see the utterance plus some padding instead of a 30 s window (the encoder's cost grows
  with its input): ``interim_encoder_pad_ms`` for interims, ``encoder_pad_ms`` for finals; -1 keeps the
  full window, as faster-whisper does, for its exact text (a shorter window changes a word now and
  then, for better and for worse: see ``bench.accuracy``).

Finals predict Whisper's timestamps (an utterance's segments, as faster-whisper cuts them) unless
``final_timestamps`` is off: then each final is one segment, over the speech the gateway's VAD heard (audio
over 30 s, and ``vad_filter``, go through faster-whisper's own path, which keeps them). CTranslate2 applies
the timestamp rules hypothesis by hypothesis, so on a GPU a batch of finals with timestamps costs about as
much as its items one after another, and without them a batch of 16 costs what one decode does
(``bench.batching``).

The decoding options, temperature fallback, silence test and timestamp parsing are faster-whisper's
(``WhisperModel.generate_with_fallback`` and ``_split_segments_by_timestamps``), applied per item. Longer
audio (offline use, benchmarks' references) goes through faster-whisper's own ``transcribe``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from faster_whisper.audio import pad_or_trim
from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

from core.engines.models import resolve_whisper_model
from core.engines.stt import (
    NO_VOCABULARY,
    DecodeRequest,
    TimedText,
    Transcription,
    Vocabulary,
    looks_degenerate,
)
from core.settings import Settings
from schemas.records import AUDIO_SAMPLE_RATE_HZ

FRAMES_PER_S = 100  # mel frames
WINDOW_FRAMES = 3000  # Whisper's 30 s
TIME_PRECISION_S = 0.02  # one timestamp token
FRAMES_PER_TIMESTAMP = 2
MAX_PASSES = 4  # windows per utterance (each resumes where the last one's finished text ended)
MAX_LENGTH = 448  # tokens, prompt included
FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
BEST_OF = 5
MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1.0 s


@dataclass(frozen=True, slots=True)
class Decoded:
    """One hypothesis with faster-whisper's quality measures."""

    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float

    @property
    def silent(self) -> bool:
        return self.no_speech_prob > NO_SPEECH_THRESHOLD and self.avg_logprob < LOG_PROB_THRESHOLD

    @property
    def needs_fallback(self) -> bool:
        if self.silent:
            return False
        return self.compression_ratio > COMPRESSION_RATIO_THRESHOLD or self.avg_logprob < LOG_PROB_THRESHOLD


Span = tuple[float, float, list[int]]  # start s, end s, text tokens


def split_by_timestamps(tokens: list[int], timestamp_begin: int, duration_s: float) -> tuple[list[Span], int | None]:
    """The segments of one window's tokens, cut as faster-whisper cuts them, and where decoding must go on
    (in mel frames), or None: when the last segment is unfinished, faster-whisper drops it and decodes
    again from the last timestamp."""
    stamp = [t >= timestamp_begin for t in tokens]
    consecutive = [i for i in range(1, len(tokens)) if stamp[i] and stamp[i - 1]]
    single_ending = len(tokens) >= 2 and stamp[-1] and not stamp[-2]
    if not consecutive:
        stamps = [t for t in tokens if t >= timestamp_begin]
        end = duration_s
        if stamps and stamps[-1] != timestamp_begin:
            end = (stamps[-1] - timestamp_begin) * TIME_PRECISION_S
        return [(0.0, end, [t for t in tokens if t < timestamp_begin])], None
    out: list[Span] = []
    last = 0
    for cut in consecutive + ([len(tokens)] if single_ending else []):
        part = tokens[last:cut]
        start, end = ((part[k] - timestamp_begin) * TIME_PRECISION_S for k in (0, -1))
        out.append((start, end, [t for t in part if t < timestamp_begin]))
        last = cut
    if single_ending:
        return out, None
    resume = (tokens[last - 1] - timestamp_begin) * FRAMES_PER_TIMESTAMP
    return out, resume if resume > 0 else None


def window_frames(n_frames: int, pad_ms: int) -> int:
    """How many mel frames the encoder gets for ``n_frames`` of audio: the audio and ``pad_ms`` of padding,
    rounded up to whole seconds, at most Whisper's 30 s window; ``pad_ms < 0``: always the full window."""
    if pad_ms < 0:
        return WINDOW_FRAMES
    wanted = n_frames + pad_ms * FRAMES_PER_S // 1000
    return min(WINDOW_FRAMES, -(-wanted // FRAMES_PER_S) * FRAMES_PER_S)


class WhisperEngine:
    """faster-whisper's model; short utterances are decoded in batches on its CTranslate2 model."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        beam_size: int = 5,
        interim_beam_size: int = 1,
        vad_filter: bool = False,
        encoder_pad_ms: int = 5000,
        interim_encoder_pad_ms: int = 2000,
        final_timestamps: bool = True,
        name: str | None = None,
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.model = WhisperModel(model, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
        self.name = name or model
        self.beam_size = beam_size
        self.interim_beam_size = interim_beam_size
        self.vad_filter = vad_filter
        self.encoder_pad_ms = encoder_pad_ms
        self.interim_encoder_pad_ms = interim_encoder_pad_ms
        self.final_timestamps = final_timestamps
        self.multilingual = self.model.model.is_multilingual
        self._tokenizer_class = Tokenizer
        self._tokenizers: dict[tuple[str | None, str], Any] = {}
        self._base = self.tokenizer("en")  # decodes any language's tokens
        self.timestamp_begin: int = self._base.timestamp_begin
        self.suppress_tokens = get_suppressed_tokens(self._base, [-1])  # faster-whisper's default
        self._lock = threading.Lock()  # one decode at a time per model instance keeps latency predictable

    @classmethod
    def from_settings(cls, s: Settings) -> WhisperEngine:
        return cls(
            resolve_whisper_model(s.model_size, s.model_path),
            device=s.device,
            compute_type=s.compute_type,
            cpu_threads=s.cpu_threads,
            beam_size=s.beam_size,
            interim_beam_size=s.interim_beam_size,
            vad_filter=s.vad_filter,
            encoder_pad_ms=s.encoder_pad_ms,
            interim_encoder_pad_ms=s.interim_encoder_pad_ms,
            final_timestamps=s.final_timestamps,
            name=f"faster-whisper:{s.model_path or s.model_size}",
        )

    def tokenizer(self, language: str | None, task: str = "transcribe") -> Any:
        language = language if self.multilingual else None
        if (language, task) not in self._tokenizers:
            self._tokenizers[language, task] = self._tokenizer_class(
                self.model.hf_tokenizer, self.multilingual, task=task, language=language or "en"
            )
        return self._tokenizers[language, task]

    def transcribe(
        self, audio: np.ndarray, *, language: str | None, final: bool, vocabulary: Vocabulary = NO_VOCABULARY
    ) -> Transcription:
        return self.transcribe_batch([DecodeRequest(audio, language, final, vocabulary)])[0]

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcription]:
        """Decode ``requests`` (finals and interims may mix: each kind is one batch) and return one
        transcription per request, in order. Audio over 30 s goes through faster-whisper alone."""
        out: list[Transcription | None] = [None] * len(requests)
        for final in (True, False):
            group = [
                i
                for i, r in enumerate(requests)
                if r.final == final
                and len(r.audio) <= WINDOW_FRAMES * AUDIO_SAMPLE_RATE_HZ // FRAMES_PER_S
                and not self.vad_filter
            ]
            if group:
                for i, t in zip(group, self._batch([requests[i] for i in group], final), strict=True):
                    out[i] = t
        for i, r in enumerate(requests):
            if out[i] is None:
                out[i] = self._long(r)
        return [t for t in out if t is not None]

    def _batch(self, requests: list[DecodeRequest], final: bool) -> list[Transcription]:
        t0 = time.perf_counter()
        mels = [self.model.feature_extractor(r.audio)[:, :-1] for r in requests]  # as faster-whisper: the last
        # frame, half padding, is left out (it changes words at the end)
        languages = [r.language if self.multilingual else "en" for r in requests]
        probabilities = [1.0] * len(requests)
        parts: list[list[TimedText]] = [[] for _ in requests]
        english: list[str | None] = [None] * len(requests)
        todo = [(i, 0) for i in range(len(requests))]  # (item, first mel frame not yet decoded)
        # CTranslate2 wants <|startoftranscript|> at one position in a batch: items whose prompts (the
        # client's vocabulary) differ in length go in batches of their own
        prefix = [self._prompt(r, "en", final).index(self._base.sot) for r in requests]
        with self._lock:
            for _ in range(MAX_PASSES):
                todo = [
                    item
                    for length in sorted({prefix[i] for i, _ in todo})
                    for item in self._pass(
                        requests,
                        mels,
                        [t for t in todo if prefix[t[0]] == length],
                        languages,
                        probabilities,
                        parts,
                        english,
                        final,
                    )
                ]
        elapsed_ms = int((time.perf_counter() - t0) * 1000)
        timed = not final or self.final_timestamps
        return [
            Transcription(" ".join(p.text for p in ps if p.text), lang, prob, ps, elapsed_ms, en, timed)
            for ps, lang, prob, en in zip(parts, languages, probabilities, english, strict=True)
        ]

    def _pass(
        self,
        requests: list[DecodeRequest],
        mels: list[np.ndarray],
        todo: list[tuple[int, int]],
        languages: list[str | None],
        probabilities: list[float],
        parts: list[list[TimedText]],
        english: list[str | None],
        final: bool,
    ) -> list[tuple[int, int]]:
        """One window of each item in ``todo``, decoded as a batch; returns the items to go on with. The
        first window of an item that wants English is also translated, in the same ``generate``."""
        pieces = [mels[i][:, at:] for i, at in todo]
        unknown = [k for k, (i, _) in enumerate(todo) if languages[i] is None]
        detected = None
        if unknown:
            # Whisper detects a language from a whole 30 s window (what it was trained on): the items without
            # one are encoded so for it alone, then decoded in the pass's window like the others (so a batch
            # gives each item the text it gets alone)
            detected, found = self._detect([pieces[k] for k in unknown])
            for k, language in zip(unknown, found, strict=True):
                languages[todo[k][0]], probabilities[todo[k][0]] = language
        default_pad_ms = self.encoder_pad_ms if final else self.interim_encoder_pad_ms
        pads_ms = [
            -1  # the full window: see _wants_english
            if at == 0 and self._wants_english(requests[i], languages[i])
            else default_pad_ms
            if requests[i].encoder_pad_ms is None
            else requests[i].encoder_pad_ms or 0
            for i, at in todo
        ]
        frames = max(window_frames(p.shape[-1], pad_ms) for p, pad_ms in zip(pieces, pads_ms, strict=True))
        if detected is not None and frames == WINDOW_FRAMES and len(unknown) == len(todo):
            encoded = detected  # the decode's window is the full one too: one encoder pass serves both
        else:
            encoded = self._encode(_stack(pieces, frames))
        langs = [languages[i] or "en" for i, _ in todo]
        prompts = [self._prompt(requests[i], lang, final) for (i, _), lang in zip(todo, langs, strict=True)]
        cap = MAX_LENGTH if frames == WINDOW_FRAMES else max_new_tokens(max(p.shape[-1] for p in pieces))
        wants = [
            k
            for k, ((i, at), lang) in enumerate(zip(todo, langs, strict=True))
            if at == 0 and self._wants_english(requests[i], lang)
        ]
        both = self._with_translations(encoded, wants)
        prompts += [
            self._prompt(requests[todo[k][0]], langs[k], final, task="translate") for k in wants
        ]  # CT2: prompts alike
        # CTranslate2's Whisper makes at most max_length / 2 new tokens (and max_length less the prompt)
        limit = min(MAX_LENGTH, max(2 * cap, max(map(len, prompts)) + cap))
        results = self._generate(both, prompts, final, max_length=limit)
        for k, res in zip(wants, results[len(todo) :], strict=True):
            said = self._text(res.tokens)
            # no speech, or a loop (people repeat themselves: only a text that compresses like a loop is one)
            english[todo[k][0]] = "" if res.silent or res.compression_ratio > COMPRESSION_RATIO_THRESHOLD else said
        results = results[: len(todo)]
        again = []
        for k, ((i, at), lang) in enumerate(zip(todo, langs, strict=True)):
            res, r = results[k], requests[i]
            looping = len(res.tokens) >= cap or looks_degenerate(self._text(res.tokens))
            if looping or ((final or frames < WINDOW_FRAMES) and res.needs_fallback):
                # a short window can send Whisper into a loop, and so can a prompt: decode this one again
                # as faster-whisper would, in the full window, and without the prompt if it looped
                plain = looping and bool(r.vocabulary or r.context)
                prompt = (
                    self._prompt(replace(r, vocabulary=NO_VOCABULARY, context=None), lang, final)
                    if plain
                    else prompts[k]
                )
                same = frames == WINDOW_FRAMES and not plain  # then the first decode was already that
                res = self._full_window(pieces[k], prompt, final, res if same else None)
            if res.silent:
                continue
            duration_s = min(pieces[k].shape[-1], WINDOW_FRAMES) / FRAMES_PER_S
            if not final:
                parts[i].append(TimedText(at * 10, at * 10 + int(duration_s * 1000), self._text(res.tokens)))
                continue
            spans, resume = split_by_timestamps(res.tokens, self.timestamp_begin, duration_s)
            for start, end, tokens in spans:
                parts[i].append(
                    TimedText(
                        at * 10 + int(start * 1000),
                        at * 10 + int(min(end, duration_s) * 1000),
                        self._text(tokens),
                    )
                )
            if resume is not None and at + resume < mels[i].shape[-1]:
                again.append((i, at + resume))
        return again

    def _detect(self, mels: list[np.ndarray]) -> tuple[Any, list[tuple[str, float]]]:
        """The encoder's pass over the whole 30 s window of each mel spectrogram, and from it the most likely
        language of each and its probability (a shorter window is out of Whisper's distribution: its guess
        flips with the CPU's rounding)."""
        encoded = self._encode(_stack(mels, WINDOW_FRAMES))
        found = [(pairs[0][0][2:-2], pairs[0][1]) for pairs in self.model.model.detect_language(encoded)]
        return encoded, found

    def _wants_english(self, r: DecodeRequest, language: str | None) -> bool:
        """Whether this decode is translated to English too, spoken in ``language`` (None: not known yet,
        so it may be). Such a decode gets the full window (a short one costs Whisper's English a fifth of
        its chrF, see ``bench.translation``), shared by both prompts."""
        if not self.multilingual or r.english_unless is None:
            return False
        return language is None or language not in r.english_unless

    def _with_translations(self, encoded: Any, items: list[int]) -> Any:
        """The encoder output with the items to translate appended again (one ``generate`` does both)."""
        if not items:
            return encoded
        import ctranslate2

        if str(encoded.dtype) not in ("DataType.float32", "DataType.float16"):  # numpy has no bfloat16
            encoded = encoded.to(ctranslate2.DataType.float32)
        out = np.asarray(encoded.to_device(ctranslate2.Device.cpu))
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate([out, out[items]])))

    def _prompt(self, r: DecodeRequest, language: str, final: bool, task: str = "transcribe") -> list[int]:
        tok = self.tokenizer(language, task)
        previous = " ".join(x.strip() for x in (r.vocabulary.prompt, r.context) if x and x.strip())
        prompt: list[int] = []
        hotwords = (r.vocabulary.hotwords or "").strip()
        if previous or hotwords:
            prompt.append(tok.sot_prev)
            if hotwords:
                prompt += tok.encode(" " + hotwords)[: MAX_LENGTH // 2 - 1]
            if previous:
                prompt += tok.encode(" " + previous)[-(MAX_LENGTH // 2 - 1) :]
        prompt += list(tok.sot_sequence)
        if not (final and self.final_timestamps):
            prompt.append(tok.no_timestamps)
        return prompt

    def _generate(
        self, encoded: Any, prompts: list[list[int]], final: bool, max_length: int = MAX_LENGTH, **sampling: Any
    ) -> list[Decoded]:
        options: dict[str, Any] = sampling or {"beam_size": self.beam_size if final else self.interim_beam_size}
        results = self.model.model.generate(
            encoded,
            prompts,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self.suppress_tokens,
            max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
            **options,
        )
        return [self._measure(res) for res in results]

    def _measure(self, res: Any) -> Decoded:
        tokens = res.sequences_ids[0]  # CTranslate2 sorts hypotheses best first (length-normalised score)
        avg_logprob = res.scores[0] * len(tokens) / (len(tokens) + 1)  # as faster-whisper: length_penalty 1
        return Decoded(tokens, avg_logprob, get_compression_ratio(self._text(tokens)), res.no_speech_prob)

    def _encode(self, mel: np.ndarray) -> Any:
        import ctranslate2

        return self.model.model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=False)

    def _full_window(self, mel: np.ndarray, prompt: list[int], final: bool, first: Decoded | None) -> Decoded:
        """One item decoded as faster-whisper decodes a window: 30 s, and for a final the temperature
        fallback (after ``first``, the greedy or beam decode, when it was already made)."""
        if first is not None and not (final and first.needs_fallback):
            return first
        one = self._encode(_stack([mel], WINDOW_FRAMES))
        first = first or self._generate(one, [prompt], final)[0]
        if not final or not first.needs_fallback:
            return first
        tried = [first]
        for temperature in FALLBACK_TEMPERATURES:
            res = self._generate(
                one,
                [prompt],
                True,
                beam_size=1,
                num_hypotheses=BEST_OF,
                sampling_topk=0,
                sampling_temperature=temperature,
            )[0]
            tried.append(res)
            if not res.needs_fallback:
                return res
        below = [d for d in tried if d.compression_ratio <= COMPRESSION_RATIO_THRESHOLD]
        return max(below or tried, key=lambda d: d.avg_logprob)

    def _text(self, tokens: list[int]) -> str:
        """The words of ``tokens`` (timestamps and special tokens left out)."""
        return str(self._base.decode(tokens)).strip()

    def _long(self, r: DecodeRequest) -> Transcription:
        """faster-whisper's own path: audio over 30 s, or its VAD filter asked for."""
        t0 = time.perf_counter()
        language = r.language if self.multilingual else "en"
        with self._lock:
            segments, info = self.model.transcribe(
                r.audio,
                language=language,
                beam_size=self.beam_size if r.final else self.interim_beam_size,
                vad_filter=self.vad_filter,
                condition_on_previous_text=False,
                temperature=0.0 if not r.final else (0.0, *FALLBACK_TEMPERATURES),
                without_timestamps=not r.final,
                initial_prompt=" ".join(x for x in (r.vocabulary.prompt, r.context) if x) or None,
                hotwords=r.vocabulary.hotwords,
            )
            parts = [TimedText(int(sg.start * 1000), int(sg.end * 1000), sg.text.strip()) for sg in segments]
        return Transcription(
            text=" ".join(p.text for p in parts if p.text),
            language=info.language,
            language_probability=float(info.language_probability),
            segments=parts,
            processing_ms=int((time.perf_counter() - t0) * 1000),
        )


def max_new_tokens(frames: int) -> int:
    """Tokens a decode of ``frames`` of audio may produce before it counts as a loop: fast speech is about
    five tokens a second, timestamps included; Whisper stuck in a loop writes until it is stopped."""
    return 24 + 12 * frames // FRAMES_PER_S


def _stack(mels: list[np.ndarray], frames: int) -> np.ndarray:
    """Mel spectrograms as one batch of ``frames`` each, zero-padded as faster-whisper pads a window."""
    return np.stack([pad_or_trim(m, frames) for m in mels])
