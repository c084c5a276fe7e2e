"""Real speech for tests: LibriVox clips (pocketsphinx-testdata), Spanish prompts (asterisk-core-sounds-es),
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
ASTERISK_ES = Path("/usr/share/asterisk/sounds/es_MX_f_Allison")
ASTERISK_ES_TEXT = Path("/usr/share/doc/asterisk-core-sounds-es/core-sounds-es.txt.gz")

# Every path read here, with the Debian package that ships it (bin/setup --test installs each of them).
TEST_DATA = {
    LIBRIVOX: "pocketsphinx-testdata",
    ASTERISK_ES: "asterisk-core-sounds-es-wav",
    ASTERISK_ES_TEXT: "asterisk-core-sounds-es",
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
def asterisk_es_transcripts() -> dict[str, str]:
    out = {}
    for line in gzip.decompress(data_path(ASTERISK_ES_TEXT).read_bytes()).decode("utf-8", "replace").splitlines():
        if ":" in line and not line.startswith(";"):
            name, text = line.split(":", 1)
            out[name.strip()] = text.strip()
    return out


def asterisk_es(name: str = "vm-intro") -> tuple[bytes, int, str]:
    pcm, rate = read_wav(data_path(ASTERISK_ES, f"{name}.wav"))
    return pcm, rate, asterisk_es_transcripts()[name]


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
