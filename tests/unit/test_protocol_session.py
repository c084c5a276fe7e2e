"""Protocol validation and the sans-I/O client session (real VAD, no network)."""

from __future__ import annotations

import json

import pytest

from core.audio.vad import DualVad
from core.settings import load_settings
from gateway.pacing import AudioPacer
from gateway.session import ClientSession, Produce, SaveState, ToClient
from schemas.messages import ProtocolError, SetLangs, Start, parse_client_message
from schemas.records import TAKEOVER_SEQ, AudioEventKind, ErrorInfo, Result, ResultKind, SessionState, secret_digest
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
    assert isinstance(out[0], SaveState) and out[0].state.input_sample_rate_hz == 48000 and out[0].durable
    ready = out[1].message
    assert ready.type == "ready" and ready.resumed is False and ready.next_utterance_index == 0
    # the server issues the id and a secret token; only the token's digest is stored
    assert len(ready.session_id) == 32 and ready.resume_token and len(ready.resume_token) >= 40
    assert out[0].state.resume_token_sha256 == secret_digest(ready.resume_token) != ready.resume_token


def test_the_session_takes_its_clock_and_its_randomness_as_arguments() -> None:
    s = load_settings()
    secrets_drawn: list[int] = []

    def secret(n: int) -> str:
        secrets_drawn.append(n)
        return f"token-{len(secrets_drawn)}"

    sess = ClientSession(
        s,
        "gw-test",
        lambda: DualVad.from_settings(s),
        clock_ms=lambda: 1_234,
        secret=secret,
        new_session_id=lambda: "s-9",
    )
    out = start(sess)
    state, ready = out[0].state, out[1].message
    assert (ready.session_id, ready.resume_token, state.created_at_ms, sess.epoch) == ("s-9", "token-1", 1_234, 1_234)
    again = ClientSession(s, "gw-test", lambda: DualVad.from_settings(s), clock_ms=lambda: 1_000, secret=secret)
    out = start(again, state, session_id="s-9", resume_token="token-1")
    assert out[1].message.resume_token == "token-2" and again.epoch == 1_235  # after the prior's, clock or not
    with pytest.raises(ProtocolError):
        start(session(), None, session_id="s-9", resume_token="token-2")
    assert secrets_drawn == [32, 32]


def test_speech_becomes_append_only_chunks_then_end() -> None:
    sess = session()
    start(sess, source_lang="en")
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    out = sess.audio(silence(1000) + pcm + silence(1500))
    events = [o.event for o in out if isinstance(o, Produce)]
    assert events[-1].kind is AudioEventKind.END and events[-1].end_reason == "silence"
    chunks = [e for e in events if e.kind is AudioEventKind.CHUNK]
    assert all(e.source_lang == "en" for e in events)
    assert [e.seq for e in events] == list(range(len(events)))  # chunks, pauses and the end: one sequence
    pauses = [e for e in events if e.kind is AudioEventKind.PAUSE]
    assert pauses and pauses[-1].speech_end_ms == events[-1].speech_end_ms  # the last pause was the end
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
    assert first is not None and first.type == "final" and first.utterance_index == 0
    assert sess.result(Result(sid, 0, ResultKind.FINAL, "he was not")) is None  # redelivered
    err = sess.result(Result(sid, 0, ResultKind.ERROR, error=ErrorInfo("unsupported_pair", "no es->de")))
    assert err is not None and err.code == "unsupported_pair"


def stored(**kw: object) -> SessionState:
    fields: dict = dict(
        session_id="s-1",
        gateway_id="other-gw",
        input_sample_rate_hz=16000,
        next_utterance_index=5,
        source_lang="es",
        target_lang="en",
        translate=True,
        audio_ms_total=42_000,
        epoch=1_700_000_000_000,
        resume_token_sha256=secret_digest("secret"),
    )
    fields.update(kw)
    return SessionState(**fields)


def test_resume_continues_counters_and_inherits_languages() -> None:
    prior = stored()
    sess = session()
    out = start(sess, prior, session_id="s-1", resume_token="secret", target_lang="pt")
    ready = out[1].message
    assert ready.resumed and ready.next_utterance_index == 5
    assert (ready.source_lang, ready.target_lang, ready.translate) == ("es", "pt", True)
    # a new token on every resume: the one just presented is spent
    assert ready.resume_token and ready.resume_token != "secret"
    assert sess.epoch > prior.epoch and out[0].state.resume_token_sha256 == secret_digest(ready.resume_token)
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    events = [o.event for o in sess.audio(pcm + silence(1500)) if isinstance(o, Produce)]
    assert events[0].utterance_index == 5 and events[0].audio_offset_ms >= 42_000 - 1000
    assert {e.utterance_id for e in events} == {f"s-1:{sess.epoch}:5"}  # the connection's own identity


@pytest.mark.parametrize(
    ("prior", "token", "owner"),
    [
        (None, "secret", "anonymous"),  # ids are server-issued: a made-up one resumes nothing
        (stored(), None, "anonymous"),
        (stored(), "guess", "anonymous"),
        (stored(resume_token_sha256=None), "secret", "anonymous"),  # a state from before tokens existed
        (None, "guess", "alice"),
    ],
)
def test_a_stranger_cannot_tell_a_missing_session_from_a_wrong_token(
    prior: SessionState | None, token: str | None, owner: str
) -> None:
    fields = {"session_id": "s-1", "received_up_to": -1} | ({"resume_token": token} if token else {})
    with pytest.raises(ProtocolError) as e:
        session().start(parse_client_message(json.dumps({"type": "start", **fields})), prior, owner)  # type: ignore[arg-type]
    assert e.value.code == "unknown_session"
    assert e.value.message == refusal_of_a_made_up_id()  # the same words whatever the case


def refusal_of_a_made_up_id() -> str:
    with pytest.raises(ProtocolError) as e:
        start(session(), None, session_id="s-1", resume_token="nothing")
    return e.value.message


def test_a_session_resumes_only_under_the_principal_that_started_it() -> None:
    sess = session()
    out = sess.start(parse_client_message('{"type": "start"}'), None, "alice")  # type: ignore[arg-type]
    state, token = out[0].state, out[1].message.resume_token
    assert state.owner == "alice"
    resume = parse_client_message(json.dumps({"type": "start", "session_id": state.session_id, "resume_token": token}))
    with pytest.raises(ProtocolError) as e:
        session().start(resume, state, "bob")  # type: ignore[arg-type]
    assert e.value.code == "forbidden"  # bob holds the token, so nothing is revealed by saying so
    again = session().start(resume, state, "alice")  # type: ignore[arg-type]
    assert again[0].state.owner == "alice" and again[1].message.resume_token not in (None, token)
    with pytest.raises(ProtocolError) as e:  # the token the resume spent opens nothing any more
        session().start(resume, again[0].state, "alice")  # type: ignore[arg-type]
    assert e.value.code == "unknown_session"
    before_owners = stored(owner=None)  # a record from before owners: the token alone, then bound
    out = session().start(
        parse_client_message('{"type": "start", "session_id": "s-1", "resume_token": "secret"}'),  # type: ignore[arg-type]
        before_owners,
        "carol",
    )
    assert out[0].state.owner == "carol"


def test_an_index_is_reserved_before_its_first_audio() -> None:
    """The state that reserves it comes first; the gateway's outbox stores records in their order."""
    sess = session()
    start(sess, source_lang="en")
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    out = sess.audio(silence(500) + pcm[: len(pcm) // 2])  # still speaking
    first_chunk = next(i for i, o in enumerate(out) if isinstance(o, Produce))
    saves = [o for o in out[:first_chunk] if isinstance(o, SaveState)]
    assert saves
    assert saves[-1].state.next_utterance_index == 1 and saves[-1].state.open_utterance_index == 0
    end = sess.handle(parse_client_message('{"type": "flush"}'))  # type: ignore[arg-type]
    last = [o for o in end if isinstance(o, SaveState)][-1].state
    assert last.open_utterance_index is None and last.next_utterance_index == 1


def test_resume_closes_the_utterance_the_previous_connection_left_open() -> None:
    prior = stored(open_utterance_index=4)
    sess = session()
    out = start(sess, prior, session_id="s-1", resume_token="secret")
    takeover = [o.event for o in out if isinstance(o, Produce)]
    assert len(takeover) == 1 and takeover[0].kind is AudioEventKind.END and takeover[0].seq == TAKEOVER_SEQ
    assert takeover[0].utterance_id == f"s-1:{prior.epoch}:4" and takeover[0].end_reason == "takeover"
    assert sess.pending == set()  # its final, if it had audio, is delivered here; nothing waits for it
    assert isinstance(out[0], Produce) and isinstance(out[-1], ToClient)  # closed before the new one starts


def test_a_superseded_connection_ends_its_utterance_but_writes_no_state() -> None:
    sess = session()
    start(sess)
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    sess.audio(silence(500) + pcm)  # mid-utterance
    sess.superseded = True
    out = sess.disconnect()
    assert [o.event.kind for o in out if isinstance(o, Produce)][-1] is AudioEventKind.END
    assert not any(isinstance(o, SaveState) for o in out) and sess.disconnect() == []


def test_results_of_two_connections_with_the_same_index_are_both_delivered() -> None:
    sess = session()
    start(sess)
    sid = sess.session_id
    assert sid is not None
    a = sess.result(Result(sid, 3, ResultKind.FINAL, "one", utterance_id=f"{sid}:1:3"))
    b = sess.result(Result(sid, 3, ResultKind.FINAL, "two", utterance_id=f"{sid}:2:3"))
    assert a is not None and b is not None
    assert sess.result(Result(sid, 3, ResultKind.FINAL, "two", utterance_id=f"{sid}:2:3")) is None


def test_pacer_allows_a_burst_then_the_factor() -> None:
    p = AudioPacer(factor=2.0, burst_s=10.0)
    assert p.take(10.0, now_s=0.0) == 0.0  # the burst
    assert p.take(1.0, now_s=0.0) == pytest.approx(0.5)  # one more second at 2x: wait half a second
    assert p.take(1.0, now_s=1.0) == 0.0  # 2 s of audio refilled in that second: one paid the debt
    assert p.take(1.0, now_s=1.0) == pytest.approx(0.5)
    assert p.take(0.1, now_s=100.0) == 0.0  # idle long enough: full burst again, capped
    assert p.level_s == pytest.approx(9.9)


def test_a_5000_digit_integer_is_a_client_error() -> None:
    with pytest.raises(ProtocolError) as e:
        parse_client_message('{"type": "start", "sample_rate": ' + "9" * 5000 + "}")
    assert e.value.code == "invalid_message" and not e.value.fatal


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


def test_audio_events_say_whether_the_session_wants_interims() -> None:
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    for wanted in (True, False):
        sess = session()
        start(sess, realtime=wanted)
        events = [o.event for o in sess.audio(pcm + silence(1500)) if isinstance(o, Produce)]
        assert events and all(e.realtime is wanted for e in events)


def test_the_vocabulary_goes_with_each_utterances_first_chunk_and_survives_a_resume() -> None:
    sess = session()
    start(sess, prompt="Szczepanski, omeprazole.", hotwords="Nguyen")
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    events = [o.event for o in sess.audio(pcm + silence(1500)) if isinstance(o, Produce)]
    first = [e for e in events if e.seq == 0]
    assert first and all((e.prompt, e.hotwords) == ("Szczepanski, omeprazole.", "Nguyen") for e in first)
    assert all(e.prompt is None for e in events if e.seq > 0)  # not repeated on every chunk
    assert sess.state is not None and sess.state.prompt == "Szczepanski, omeprazole."
    resumed = session()
    out = start(resumed, stored(prompt="Szczepanski", hotwords=None), session_id="s-1", resume_token="secret")
    assert isinstance(out[-1], ToClient) and resumed.state is not None and resumed.state.prompt == "Szczepanski"
    with pytest.raises(ProtocolError):
        start(session(), prompt="x" * 801)


@pytest.mark.parametrize(
    ("text", "stuck"),
    [
        ("Nguyen Nguyen Nguyen Nguyen", True),
        ("the the the cat", True),
        ("a b a b a b a b a b", True),
        ("He was not an ill-disposed young man.", False),
        ("No, no. I said no.", False),
    ],
)
def test_loops_are_recognised(text: str, stuck: bool) -> None:
    from core.engines.stt import looks_degenerate

    assert looks_degenerate(text) is stuck


def test_several_targets_go_with_every_audio_event_and_survive_a_resume() -> None:
    sess = session()
    out = start(sess, source_lang="es", target_lang="pt", target_langs=["en", "Portuguese", "fr"], translate=True)
    ready = out[1].message
    assert (ready.target_lang, ready.target_langs) == ("pt", ["pt", "en", "fr"])  # target_lang first, each once
    assert out[0].state.targets == ["pt", "en", "fr"]
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    events = [o.event for o in sess.audio(pcm + silence(1500)) if isinstance(o, Produce)]
    assert events and all(e.targets == ["pt", "en", "fr"] for e in events)
    # a resume that names no target keeps them all; one that names targets replaces them
    prior = stored(target_lang="pt", target_langs=["pt", "en", "fr"])
    kept = start(session(), prior, session_id="s-1", resume_token="secret")[1].message
    assert (kept.target_lang, kept.target_langs, kept.translate) == ("pt", ["pt", "en", "fr"], True)
    replaced = start(session(), prior, session_id="s-1", resume_token="secret", target_langs=["de"])[1].message
    assert (replaced.target_lang, replaced.target_langs) == ("de", ["de"])


def test_set_langs_changes_the_targets_and_a_refused_change_changes_nothing() -> None:
    sess = session()
    start(sess, target_lang="pt", translate=True)
    langs = sess.handle(parse_client_message('{"type": "set_langs", "target_langs": ["en", "de"]}'))[-1].message
    assert (langs.target_lang, langs.target_langs, langs.translate) == ("en", ["en", "de"], True)
    with pytest.raises(ProtocolError, match="needs a target_lang"):
        sess.handle(parse_client_message('{"type": "set_langs", "source_lang": "fr"}'))  # translate stays on
    assert sess.state is not None and (sess.state.source_lang, sess.state.targets) == (None, ["en", "de"])


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"target_langs": ["pt", "xx-nope"]}, "unsupported_language"),
        ({"target_langs": ["pt", "en", "fr", "de", "es", "it", "ru", "ja", "zh"]}, "invalid_message"),
        ({"target_lang": "pt", "target_langs": ["en", "fr", "de", "es", "it", "ru", "ja", "zh"]}, "invalid_message"),
        ({"target_langs": "pt"}, "invalid_message"),
        ({"target_langs": [], "translate": True}, "invalid_message"),
    ],
)
def test_bad_target_lists_are_refused(fields: dict, code: str) -> None:
    with pytest.raises(ProtocolError) as e:
        msg = parse_client_message(json.dumps({"type": "start", **fields}))
        session().validate(msg)  # type: ignore[arg-type]
    assert e.value.code == code


def test_each_targets_translation_and_error_is_delivered_once() -> None:
    from schemas.records import Translation

    sess = session()
    start(sess, target_langs=["pt", "en", "de"], translate=True)
    sid = sess.session_id
    assert sid is not None

    def tr(to: str) -> Result:
        return Result(sid, 0, ResultKind.TRANSLATION, "hola", translation=Translation("es", to, f"<{to}>", "x"))

    def failed(to: str, code: str = "unsupported_pair") -> Result:
        return Result(sid, 0, ResultKind.ERROR, target_lang=to, error=ErrorInfo(code, f"no es->{to}"))

    got = [sess.result(r) for r in (tr("pt"), tr("en"), tr("pt"), failed("de"), failed("de"), failed("fr"))]
    assert [(m.type, m.target_lang) if m else None for m in got] == [
        ("translation", "pt"),
        ("translation", "en"),
        None,  # redelivered after a failover
        ("error", "de"),
        None,
        ("error", "fr"),
    ]
    stt = sess.result(Result(sid, 0, ResultKind.ERROR, target_lang="pt", error=ErrorInfo("stt_failed", "boom")))
    assert stt is not None and stt.target_lang is None  # not a translation's error: no target named


def test_messages_name_an_utterance_by_its_index_and_still_carry_the_deprecated_segment_id() -> None:
    """``utterance_index`` is the one name (records, ``ready``'s ``next_utterance_index``, the messages);
    ``segment_id`` goes out beside it, equal, until clients have moved."""
    from schemas.messages import ErrorMsg, UtteranceStart, result_message

    start_msg = json.loads(UtteranceStart(utterance_id="u", utterance_index=3, audio_start_ms=0).to_json())
    assert start_msg["utterance_index"] == start_msg["segment_id"] == 3
    final = json.loads(result_message(Result("s", 4, ResultKind.FINAL, "hello")).to_json())
    assert final["utterance_index"] == final["segment_id"] == 4
    plain_error = json.loads(ErrorMsg(code="invalid_json", message="x").to_json())
    assert plain_error["utterance_index"] is None and plain_error["segment_id"] is None
