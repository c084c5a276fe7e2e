"""The OpenAI-compatible audio API, driven by the official ``openai`` package pointed at the gateway: real
speech in real containers (FLAC, Ogg/Opus, MP3) through Kafka and the workers; WER, chrF and the SRT/VTT
shape asserted; bad uploads refused in OpenAI's error shape; a session per request, on the topics."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import urllib.request

import httpx
import numpy as np
import openai
import pytest
import soxr
from openai import OpenAI

from core.settings import load_settings
from schemas.records import ResultKind
from streams.reader import stored_session_results
from tests.audio import asterisk, chrf, encode_audio, librivox, librivox_transcripts, silence, translation_prompts, wer
from tests.stack import Stack
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.timeout(300)

CLIPS = sorted(librivox_transcripts())


def five_clips() -> tuple[bytes, str]:
    pcm, refs = silence(500), []
    for clip in CLIPS:
        audio, _, ref = librivox(clip)
        pcm += audio + silence(1000)
        refs.append(ref)
    return pcm, " ".join(refs)


def client(port: int, key: str = "sk-anything") -> OpenAI:
    return OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=240)


SRT_BLOCK = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n([^\n]+)\n")


def srt_cues(srt: str) -> list[tuple[int, float, float, str]]:
    blocks = srt.strip().split("\n\n")
    cues = []
    for block in blocks:
        m = SRT_BLOCK.fullmatch(block + "\n")
        assert m, f"not an SRT block: {block!r}"
        g = m.groups()
        start = int(g[1]) * 3600 + int(g[2]) * 60 + int(g[3]) + int(g[4]) / 1000
        end = int(g[5]) * 3600 + int(g[6]) * 60 + int(g[7]) + int(g[8]) / 1000
        cues.append((int(g[0]), start, end, g[9]))
    return cues


def test_the_openai_client_transcribes_flac_through_kafka(stack: Stack) -> None:
    pcm, ref = five_clips()
    api = client(stack.health_port)
    assert {"whisper-1", "base"} <= {m.id for m in api.models.list()}
    raw = api.audio.transcriptions.with_raw_response.create(
        model="whisper-1",
        file=("speech.flac", encode_audio(pcm, 16000, "flac", "flac")),
        response_format="verbose_json",
    )
    tr = raw.parse()
    assert wer(ref, tr.text) < 0.1, tr.text
    assert tr.language == "english" and abs(tr.duration - len(pcm) / 32000) < 0.1
    starts = [s.start for s in tr.segments]
    assert starts == sorted(starts) and all(0 <= s.start < s.end <= tr.duration + 0.5 for s in tr.segments)
    assert " ".join(s.text for s in tr.segments) == tr.text
    # the request was a session like any other: its finals are on the results topic (replayable, exported)
    sid = raw.headers["x-babelstream-session"]
    settings = load_settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix, results_partitions=2)
    finals = [r for r in asyncio.run(stored_session_results(settings, sid)) if r.kind is ResultKind.FINAL]
    assert len(finals) >= len(CLIPS) and wer(ref, " ".join(r.text for r in finals)) < 0.1


def test_srt_vtt_and_text_of_an_opus_upload(stack: Stack) -> None:
    pcm, _, ref = librivox(CLIPS[0])
    ogg = encode_audio(pcm, 16000, "ogg", "libopus")
    api = client(stack.health_port)
    srt = api.audio.transcriptions.create(model="whisper-1", file=("a.ogg", ogg), response_format="srt", language="en")
    cues = srt_cues(srt)
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1))
    assert all(start < end for _, start, end, _ in cues) and cues[-1][2] <= len(pcm) / 32000 + 0.5
    assert wer(ref, " ".join(c[3] for c in cues)) < 0.15
    vtt = api.audio.transcriptions.create(model="whisper-1", file=("a.ogg", ogg), response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n") and "-->" in vtt
    text = api.audio.transcriptions.create(model="base", file=("a.ogg", ogg), response_format="text")
    assert wer(ref, text) < 0.15


def test_spanish_mp3_is_translated_to_english(stack: Stack) -> None:
    from tests.e2e.test_speech_translation import MIN_CHRF

    pcm, refs = silence(500), []
    for name, _, english in translation_prompts("es", 3):
        clip, rate, _ = asterisk("es", name)
        pcm += soxr.resample(np.frombuffer(clip, "<i2"), rate, 16000).astype("<i2").tobytes() + silence(1200)
        refs.append(english)
    mp3 = encode_audio(pcm, 16000, "mp3", "libmp3lame")
    out = client(stack.health_port).audio.translations.create(model="whisper-1", file=("es.mp3", mp3))
    assert chrf(" ".join(refs), out.text) >= MIN_CHRF, (out.text, refs)


def test_bad_requests_get_openai_errors(stack: Stack) -> None:
    api = client(stack.health_port)
    pcm, _, _ = librivox(CLIPS[1])
    wav_ok = encode_audio(pcm, 16000, "wav", "pcm_s16le")
    cases = [
        (dict(model="whisper-1", file=("x.mp3", b"ID3 this is not audio at all" * 50)), "invalid_file"),
        (dict(model="whisper-1", file=("x.wav", b"")), "invalid_file"),
        (dict(model="gpt-4o-transcribe", file=("x.wav", wav_ok)), "model_not_found"),
        (dict(model="whisper-1", file=("x.wav", wav_ok), language="xx-nope"), "unsupported_language"),
        (
            dict(
                model="whisper-1",
                file=("x.wav", wav_ok),
                response_format="verbose_json",
                timestamp_granularities=["word"],
            ),
            "unsupported_value",
        ),
    ]
    for kwargs, code in cases:
        with pytest.raises(openai.BadRequestError) as e:
            api.audio.transcriptions.create(**kwargs)  # type: ignore[arg-type]
        assert e.value.code == code, (kwargs.get("model"), e.value.body)
    base = f"http://127.0.0.1:{stack.health_port}/v1"
    not_a_form = httpx.post(f"{base}/audio/transcriptions", json={"model": "whisper-1"}, timeout=10)
    assert not_a_form.status_code == 400 and not_a_form.json()["error"]["code"] == "invalid_request"
    no_file = httpx.post(f"{base}/audio/transcriptions", data={"model": "whisper-1"}, files={"x": b"1"}, timeout=10)
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    form = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + wav_ok + b"\r\n--XX--\r\n"
    for content_type, body in (
        ("multipart/form-data; boundary=XX", form[:60]),  # truncated
        ("multipart/form-data; boundary=YY", form),  # the wrong boundary
        ("multipart/form-data", form),  # none
        ("multipart/form-data; boundary=XX", b"--XX\r\nnot a header\r\n\r\nabc\r\n--XX--\r\n"),
        ("multipart/form-data; boundary=" + "X" * 100, form),  # over RFC 2046's 70 characters
    ):
        bad = httpx.post(
            f"{base}/audio/transcriptions", content=body, headers={"Content-Type": content_type}, timeout=10
        )
        assert bad.status_code == 400, (content_type, bad.text)
        assert bad.json()["error"]["code"] == "invalid_request" and bad.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve("gpt-4o-transcribe")
    # the gateway still serves: nothing above left a session behind
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.health_port}/healthz", timeout=5) as r:
        assert b'"clients": 0' in r.read()


def test_a_long_upload_waits_for_the_workers_instead_of_dropping_speech(stack: Stack) -> None:
    """Two utterances at most may wait for their finals here: the upload's speech goes in as they finish,
    and every clip is transcribed; a file over the size limit is refused before it is decoded."""
    svc = stack.start_gateway(MAX_PENDING_UTTERANCES="2", API_MAX_UPLOAD_BYTES="400000", API_MAX_AUDIO_S="90")
    try:
        stack.wait_healthy([svc], timeout_s=60)
        port = int(svc.base_url.rsplit(":", 1)[1])
        pcm, ref = five_clips()
        out = client(port).audio.transcriptions.create(
            model="whisper-1", file=("five.mp3", encode_audio(pcm, 16000, "mp3", "libmp3lame"))
        )
        assert wer(ref, out.text) < 0.1, out.text
        with pytest.raises(openai.APIStatusError) as e:
            client(port).audio.transcriptions.create(model="whisper-1", file=("big.wav", bytes(500_000)))
        assert e.value.status_code == 413
        # a small file can hold hours of audio: decoding stops at API_MAX_AUDIO_S, before memory runs out
        hours = encode_audio(silence(100_000), 16000, "ogg", "libopus")
        assert len(hours) < 400_000
        with pytest.raises(openai.BadRequestError) as e:
            client(port).audio.transcriptions.create(model="whisper-1", file=("long.ogg", hours))
        assert e.value.code == "audio_too_long"
        metrics = urllib.request.urlopen(f"{svc.base_url}/metrics", timeout=5).read().decode()
        assert 'babelstream_gateway_errors_total{code="overloaded"}' not in metrics
        assert 'babelstream_api_requests_total{endpoint="transcriptions",status="200"} 1.0' in metrics
    finally:
        stack.retire(svc)


def test_a_client_that_hangs_up_mid_request_frees_its_session(stack: Stack) -> None:
    """The upload is accepted and being fed when the client gives up: the request is cancelled, its
    session released (the gateway's client count goes back), and the gateway serves the next request."""
    pcm, _ = five_clips()
    long_file = encode_audio(pcm + pcm + pcm, 16000, "flac", "flac")
    health = f"http://127.0.0.1:{stack.health_port}/healthz"

    def clients() -> int:
        with urllib.request.urlopen(health, timeout=5) as r:
            return int(json.loads(r.read())["clients"])

    def impatient() -> BaseException | None:
        api = OpenAI(base_url=f"http://127.0.0.1:{stack.health_port}/v1", api_key="k", max_retries=0, timeout=4)
        try:
            api.audio.transcriptions.create(model="whisper-1", file=("long.flac", long_file))
        except openai.APITimeoutError as e:
            return e
        return None

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        request = pool.submit(impatient)

        def opened() -> bool:  # its session is open (a test that could not fail would skip this)
            assert not request.done(), "the request ended before it opened a session"
            return clients() > 0

        wait_until_sync(opened, 10, "the request never opened a session", every_s=0.05)
        assert isinstance(request.result(timeout=30), openai.APITimeoutError)
    # 5 s: its audio would take far longer to transcribe
    wait_until_sync(lambda: clients() == 0, 5, "the abandoned request still holds its session")
    pcm1, _, ref1 = librivox(CLIPS[2])
    text = client(stack.health_port).audio.transcriptions.create(
        model="whisper-1", file=("a.wav", encode_audio(pcm1, 16000, "wav", "pcm_s16le")), response_format="text"
    )
    assert wer(ref1, text) < 0.2
