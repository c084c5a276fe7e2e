"""A client's vocabulary (names, jargon): Whisper's initial prompt and hotwords, guarded against the
loops they can cause; real model, real synthetic speech, and through the whole pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from babelstream.client import stream_audio
from core.audio.resample import pcm16_to_float
from core.engines.models import resolve_whisper_model
from core.engines.stt import Vocabulary, looks_degenerate
from core.engines.whisper import WhisperEngine
from tests.audio import espeak, silence, wer
from tests.stack import Stack

pytestmark = pytest.mark.timeout(300)

SAID = "Doctor Szczepanski prescribed omeprazole and metformin for Mr Nguyen."  # what espeak-ng says
REF = "Dr. Szczepanski prescribed omeprazole and metformin for Mr. Nguyen."  # as Whisper writes titles
PROMPT = "Kubernetes, Kafka, Faust, Szczepanski, omeprazole, metformin, Nguyen."


def test_a_prompt_teaches_names_and_hotwords_cannot_make_it_loop(tmp_path: Path) -> None:
    engine = WhisperEngine(resolve_whisper_model("base", None), cpu_threads=2)
    audio = pcm16_to_float(espeak(SAID, tmp_path))
    plain = engine.transcribe(audio, language="en", final=True).text
    taught = engine.transcribe(audio, language="en", final=True, vocabulary=Vocabulary(prompt=PROMPT)).text
    assert wer(REF, plain) > 0.3, plain  # the names are beyond the model on their own
    assert wer(REF, taught) < 0.15, taught
    # these hotwords alone make Whisper base repeat "Nguyen" here: the guard decodes again without them
    hot = Vocabulary(hotwords="Kubernetes Kafka Faust Szczepanski omeprazole metformin Nguyen")
    looped = engine.transcribe(audio, language="en", final=True, vocabulary=hot).text
    assert not looks_degenerate(looped) and wer(REF, looped) <= wer(REF, plain) + 0.01, looped


async def test_the_vocabulary_travels_with_the_session(stack: Stack, tmp_path: Path) -> None:
    pcm = silence(500) + espeak(SAID, tmp_path) + silence(500)
    rep = await stream_audio(stack.ws_url, pcm, source_lang="en", prompt=PROMPT, pace=0, timeout_s=120)
    assert wer(REF, rep.text) < 0.15, rep.text
