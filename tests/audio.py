"""Real speech for tests: LibriVox clips (pocketsphinx-testdata), Asterisk's telephone prompts in Spanish,
French, Italian and Russian with their English originals (asterisk-core-sounds-*),
and deterministic synthetic speech from espeak-ng rendered with ``sox -D``."""

from __future__ import annotations

import gzip
import re
import subprocess
import unicodedata
import wave
from functools import cache
from pathlib import Path

import numpy as np

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
# Asterisk's prompts: the same names in every language, each with its transcript (English: the reference
# translation of the others)
ASTERISK_VOICES = {"es": "es_MX_f_Allison", "fr": "fr_CA_f_June", "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU"}
ASTERISK_SOUNDS = {lang: Path("/usr/share/asterisk/sounds") / voice for lang, voice in ASTERISK_VOICES.items()}
ASTERISK_TEXT = {
    lang: Path(f"/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz")
    for lang in ["en", *ASTERISK_VOICES]
}
ASTERISK_ES = ASTERISK_SOUNDS["es"]
ASTERISK_EN = Path("/usr/share/asterisk/sounds/en_US_f_Allison")  # the English prompts, GSM

# Every path read here, with the Debian package that ships it (bin/setup --test installs each of them).
TEST_DATA = {
    LIBRIVOX: "pocketsphinx-testdata",
    **{path: f"asterisk-core-sounds-{lang}-wav" for lang, path in ASTERISK_SOUNDS.items()},
    **{path: f"asterisk-core-sounds-{lang}" for lang, path in ASTERISK_TEXT.items()},
    ASTERISK_EN: "asterisk-core-sounds-en-gsm",
}


class MissingTestData(RuntimeError):
    pass


def data_path(root: Path, *parts: str) -> Path:
    """``root / parts``, or an error naming the Debian package to install when ``root`` is missing."""
    if not root.exists():
        raise MissingTestData(
            f"{root} is missing: install the Debian package {TEST_DATA[root]} (bin/setup --test does)"
        )
    return root.joinpath(*parts)


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, f"{path}: expected 16-bit PCM"
        pcm = w.readframes(w.getnframes())
        if w.getnchannels() > 1:
            x = np.frombuffer(pcm, "<i2").reshape(-1, w.getnchannels()).mean(axis=1)
            pcm = x.astype("<i2").tobytes()
        return pcm, w.getframerate()


def silence(ms: int, rate_hz: int = 16000) -> bytes:
    return bytes(rate_hz * ms // 1000 * 2)


@cache
def librivox_transcripts() -> dict[str, str]:
    out = {}
    for line in data_path(LIBRIVOX, "transcription").read_text().splitlines():
        m = re.match(r"<s>\s*(.*?)\s*</s>\s*\((.+)\)", line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def librivox(clip: str = "sense_and_sensibility_01_austen_64kb-0870") -> tuple[bytes, int, str]:
    pcm, rate = read_wav(data_path(LIBRIVOX, f"{clip}.wav"))
    return pcm, rate, librivox_transcripts()[clip]


@cache
def asterisk_transcripts(lang: str = "es") -> dict[str, str]:
    out = {}
    text = gzip.decompress(data_path(ASTERISK_TEXT[lang]).read_bytes()).decode("utf-8", "replace")
    for line in text.splitlines():
        if ":" in line and not line.startswith(";"):
            name, said = line.split(":", 1)
            out[name.strip()] = said.strip()
    return out


def asterisk(lang: str, name: str) -> tuple[bytes, int, str]:
    """One prompt in ``lang``: PCM16, its rate, and its transcript."""
    pcm, rate = read_wav(data_path(ASTERISK_SOUNDS[lang], f"{name}.wav"))
    return pcm, rate, asterisk_transcripts(lang)[name]


def english_prompts(count: int, min_words: int = 6) -> list[tuple[bytes, int, str]]:
    """The first ``count`` English prompts (PCM16, 8 kHz, transcript) that say at least ``min_words`` words
    and no digits or bracketed notes (Whisper writes "28.8", the transcripts "twenty-eight"), in a fixed
    order; sox decodes their GSM."""
    out = []
    for name, said in sorted(asterisk_transcripts("en").items()):
        gsm = data_path(ASTERISK_EN) / f"{name}.gsm"
        if len(said.split()) < min_words or re.search(r"[0-9\[\]]", said) or "/" in name or not gsm.is_file():
            continue
        pcm = subprocess.run(
            ["sox", str(gsm), "-t", "raw", "-e", "signed", "-b", "16", "-c", "1", "-r", "8000", "-"],
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
        out.append((pcm, 8000, said))
        if len(out) == count:
            break
    return out


def asterisk_es_transcripts() -> dict[str, str]:
    return asterisk_transcripts("es")


def asterisk_es(name: str = "vm-intro") -> tuple[bytes, int, str]:
    return asterisk("es", name)


def translation_prompts(lang: str, count: int, min_words: int = 6) -> list[tuple[str, str, str]]:
    """(name, transcript, English reference) of the first ``count`` prompts of ``lang`` that say at least
    ``min_words`` words and exist in English too, by name, in a fixed order."""
    english = asterisk_transcripts("en")
    out = []
    for name, said in sorted(asterisk_transcripts(lang).items()):
        if name in english and len(english[name].split()) >= min_words and "/" not in name:
            if data_path(ASTERISK_SOUNDS[lang], f"{name}.wav").is_file():
                out.append((name, said, english[name]))
        if len(out) == count:
            break
    return out


def chrf(reference: str, hypothesis: str) -> float:
    """chrF (character n-grams, sacrebleu's defaults) on a 0-1 scale."""
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(hypothesis, [reference]).score) / 100


def espeak(text: str, tmp: Path, voice: str = "en-us", rate_hz: int = 16000, wpm: int = 150) -> bytes:
    """Deterministic synthetic speech: espeak-ng to WAV, then sox (no dither) to the wanted rate."""
    raw = tmp / "espeak.wav"
    out = tmp / "espeak16.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True, timeout=60)
    subprocess.run(["sox", "-D", str(raw), "-r", str(rate_hz), "-c", "1", "-b", "16", str(out)], check=True, timeout=60)
    pcm, _ = read_wav(out)
    return pcm


def normalize(text: str) -> str:
    """Lower case, no punctuation or accents: references (e.g. the Asterisk prompts) are unaccented."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(_SPOKEN.get(w, w) for w in text.split())


_SPOKEN = {"mr": "mister", "mrs": "missus", "dr": "doctor"}  # references spell out what is spoken


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalize(reference), normalize(hypothesis)))


def encode_audio(pcm: bytes, rate_hz: int, container: str, codec: str) -> bytes:
    """Mono PCM16 as a file in ``container`` with ``codec`` (PyAV, e.g. ``ogg``/``libopus``, ``flac``/``flac``,
    ``mp3``/``libmp3lame``): what a user uploads."""
    import io

    import av

    out = io.BytesIO()
    with av.open(out, "w", format=container) as f:
        stream = f.add_stream(codec, rate=48000 if codec == "libopus" else rate_hz, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate_hz
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=stream.rate)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                f.mux(packet)
        for packet in stream.encode(None):
            f.mux(packet)
    return out.getvalue()
