"""Protocol validation and the sans-I/O client session (real VAD, no network)."""

from __future__ import annotations

import json

import pytest

from babelstream.audio.vad import DualVad
from babelstream.settings import load_settings
from gateway.session import ClientSession, Produce, SaveState, ToClient
from schemas.messages import ProtocolError, SetLangs, Start, parse_client_message
from schemas.records import AudioEventKind, ErrorInfo, Result, ResultKind, SessionState
from tests.audio import librivox, silence


def session(**kw: object) -> ClientSession:
    s = load_settings(**kw)
    return ClientSession(s, "gw-test", lambda: DualVad.from_settings(s))


def start(sess: ClientSession, prior: SessionState | None = None, **fields: object) -> list:
    return sess.start(parse_client_message(json.dumps({"type": "start", **fields})), prior)  # type: ignore[arg-type]


def test_languages_are_normalised() -> None:
    msg = parse_client_message('{"type": "start", "source_lang": "pt-BR", "target_lang": "English"}')
    assert isinstance(msg, Start) and (msg.source_lang, msg.target_lang) == ("pt", "en")
    msg = parse_client_message('{"type": "set_langs", "source_lang": "auto", "target_lang": "deu"}')
    assert isinstance(msg, SetLangs) and (msg.source_lang, msg.target_lang) == (None, "de")


def test_start_produces_ready_and_state() -> None:
    out = start(session(), sample_rate=48000, target_lang="pt", translate=True)
    assert isinstance(out[0], SaveState) and out[0].state.input_sample_rate_hz == 48000
    ready = out[1].message
    assert ready.type == "ready" and ready.resumed is False and ready.next_utterance_index == 0


def test_speech_becomes_append_only_chunks_then_end() -> None:
    sess = session()
    start(sess, source_lang="en")
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    out = sess.audio(silence(1000) + pcm + silence(1500))
    events = [o.event for o in out if isinstance(o, Produce)]
    assert events[-1].kind is AudioEventKind.END and events[-1].end_reason == "silence"
    chunks = events[:-1]
    assert all(e.kind is AudioEventKind.CHUNK and e.source_lang == "en" for e in chunks)
    assert [e.seq for e in events] == list(range(len(events)))
    assert sum(len(e.pcm) for e in chunks) == sum(e.duration_ms for e in chunks) * 32
    kinds = [o.message.type for o in out if isinstance(o, ToClient)]
    assert kinds == ["utterance_start", "utterance_end"]
    assert sess.pending == {0} and sess.state is not None and sess.state.next_utterance_index == 1


def test_results_are_deduplicated_and_realtime_can_be_switched_off() -> None:
    sess = session()
    start(sess, realtime=False)
    sid = sess.session_id
    assert sid is not None
    assert sess.result(Result(sid, 0, ResultKind.REALTIME, "he was")) is None
    first = sess.result(Result(sid, 0, ResultKind.FINAL, "he was not"))
    assert first is not None and first.type == "final" and first.segment_id == 0
    assert sess.result(Result(sid, 0, ResultKind.FINAL, "he was not")) is None  # redelivered
    err = sess.result(Result(sid, 0, ResultKind.ERROR, error=ErrorInfo("unsupported_pair", "no es->de")))
    assert err is not None and err.code == "unsupported_pair"


def test_resume_continues_counters_and_inherits_languages() -> None:
    prior = SessionState(
        "s-1",
        "other-gw",
        16000,
        next_utterance_index=5,
        source_lang="es",
        target_lang="en",
        translate=True,
        audio_ms_total=42_000,
    )
    sess = session()
    out = start(sess, prior, session_id="s-1", target_lang="pt")
    ready = out[1].message
    assert ready.resumed and ready.next_utterance_index == 5
    assert (ready.source_lang, ready.target_lang, ready.translate) == ("es", "pt", True)
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    events = [o.event for o in sess.audio(pcm + silence(1500)) if isinstance(o, Produce)]
    assert events[0].utterance_index == 5 and events[0].audio_offset_ms >= 42_000 - 1000


def test_overload_drops_new_speech_with_one_error() -> None:
    sess = session(max_pending_utterances=1)
    start(sess)
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    first = sess.audio(pcm + silence(1500))
    second = sess.audio(pcm + silence(1500)) + sess.audio(pcm + silence(1500))
    assert any(isinstance(o, Produce) for o in first)
    assert not any(isinstance(o, Produce) for o in second)
    errors = [o.message for o in second if isinstance(o, ToClient) and o.message.type == "error"]
    assert len(errors) == 1 and errors[0].code == "overloaded"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"sample_rate": 4000}, "bad_sample_rate"),
        ({"channels": 9}, "bad_channels"),
        ({"translate": True}, "invalid_message"),
    ],
)
def test_start_rejections(fields: dict, code: str) -> None:
    with pytest.raises(ProtocolError) as e:
        start(session(), **fields)
    assert e.value.code == code and e.value.to_message().type == "error"


def test_stop_flushes_and_refuses_more_audio() -> None:
    sess = session()
    start(sess)
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    sess.audio(silence(500) + pcm)  # still speaking
    out = sess.handle(parse_client_message('{"type": "stop"}'))  # type: ignore[arg-type]
    ends = [o.event for o in out if isinstance(o, Produce) and o.event.kind is AudioEventKind.END]
    assert len(ends) == 1 and ends[0].end_reason == "stop"
    assert out[-1].message.type == "stopped"
    with pytest.raises(ProtocolError) as e:
        sess.audio(b"\x00" * 320)
    assert e.value.code == "stopped"
