"""Broadcasts on the speaker's side, sans I/O: ``start`` with ``broadcast`` gives viewers an id and a
read-only token (stored only as a digest), a resume keeps the broadcast, the speaker rotates the token
or ends the broadcast, and :func:`may_watch` lets in exactly the viewers holding the current token."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from core.audio.vad import DualVad
from core.settings import load_settings
from gateway.broadcast import may_watch
from gateway.session import ClientSession, Produce, SaveState, ToClient
from schemas.messages import BroadcastOut, ProtocolError, parse_client_message
from schemas.records import ErrorInfo, Result, ResultKind, SessionState, Translation, secret_digest
from tests.audio import librivox


def counter() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"secret-{n}"


def session() -> ClientSession:
    s = load_settings()
    draws = counter()
    return ClientSession(s, "gw", lambda: DualVad.from_settings(s), secret=lambda n: next(draws))


def send(sess: ClientSession, prior: SessionState | None = None, **fields: object) -> list:
    msg = parse_client_message(json.dumps(fields))
    if fields["type"] == "start":
        return sess.start(msg, prior)  # type: ignore[arg-type]
    return sess.handle(msg)  # type: ignore[arg-type]


def told(out: list) -> BroadcastOut:
    [b] = [o.message for o in out if isinstance(o, ToClient) and isinstance(o.message, BroadcastOut)]
    return b


def test_a_broadcast_start_gives_an_id_and_a_viewer_token_kept_only_as_its_digest() -> None:
    sess = session()
    out = send(sess, type="start", broadcast=True)
    state, ready = out[0].state, out[1].message
    b = ready.broadcast
    assert b is not None and b.broadcast_id and b.viewer_token and not b.public and not b.ended
    assert b.broadcast_id != ready.session_id and b.viewer_token != ready.resume_token
    assert state.broadcast_id == b.broadcast_id and state.viewer_token_sha256 == secret_digest(b.viewer_token)
    assert b.viewer_token not in json.dumps(state.to_avro())
    assert may_watch(state, b.broadcast_id, b.viewer_token)
    assert not may_watch(state, b.broadcast_id, "guess") and not may_watch(state, b.broadcast_id, None)
    assert not may_watch(state, "another-id", b.viewer_token) and not may_watch(None, b.broadcast_id, b.viewer_token)


def test_a_plain_session_is_no_broadcast_and_cannot_be_controlled_as_one() -> None:
    sess = session()
    out = send(sess, type="start")
    assert out[1].message.broadcast is None and out[0].state.broadcast_id is None
    assert not may_watch(out[0].state, "", None)
    for kind in ("rotate_viewer_token", "end_broadcast"):
        with pytest.raises(ProtocolError) as e:
            send(sess, type=kind)
        assert e.value.code == "not_broadcast"


def test_a_public_broadcast_needs_no_token_and_has_none_to_rotate() -> None:
    sess = session()
    out = send(sess, type="start", broadcast=True, public=True)
    b = out[1].message.broadcast
    assert b.public and b.viewer_token is None and out[0].state.viewer_token_sha256 is None
    assert may_watch(out[0].state, b.broadcast_id, None)
    with pytest.raises(ProtocolError, match="public"):
        send(sess, type="rotate_viewer_token")
    with pytest.raises(ProtocolError, match="broadcast=true"):
        parse_client_message('{"type": "start", "public": true}')


def test_rotating_the_token_locks_out_the_old_one_and_is_stored_before_the_speaker_hears_of_it() -> None:
    sess = session()
    out = send(sess, type="start", broadcast=True)
    first = out[1].message.broadcast
    out = send(sess, type="rotate_viewer_token")
    assert isinstance(out[0], SaveState) and out[0].durable and isinstance(out[1], ToClient)
    new = told(out)
    assert new.broadcast_id == first.broadcast_id and new.viewer_token not in (None, first.viewer_token)
    state = out[0].state
    assert may_watch(state, new.broadcast_id, new.viewer_token)
    assert not may_watch(state, first.broadcast_id, first.viewer_token)


def test_a_resume_keeps_the_broadcast_without_telling_its_token_again() -> None:
    sess = session()
    out = send(sess, type="start", broadcast=True, target_lang="pt")
    state, ready = out[0].state, out[1].message
    again = session()
    out = send(again, state, type="start", session_id=ready.session_id, resume_token=ready.resume_token)
    b = out[1].message.broadcast
    assert b.broadcast_id == ready.broadcast.broadcast_id and b.viewer_token is None and not b.public
    assert out[0].state.viewer_token_sha256 == state.viewer_token_sha256  # the viewers' token still works
    plain = session()
    out = send(plain, type="start")
    st, rd = out[0].state, out[1].message
    later = send(session(), st, type="start", session_id=rd.session_id, resume_token=rd.resume_token, broadcast=True)
    assert later[1].message.broadcast is not None  # a session may begin broadcasting when it resumes


def test_an_ended_broadcast_stays_ended_and_takes_no_more_control() -> None:
    sess = session()
    out = send(sess, type="start", broadcast=True)
    ready = out[1].message
    out = send(sess, type="end_broadcast")
    assert told(out).ended and out[0].state.broadcast_ended
    with pytest.raises(ProtocolError) as e:
        send(sess, type="rotate_viewer_token")
    assert e.value.code == "broadcast_ended"
    resumed = send(session(), out[0].state, type="start", session_id=ready.session_id, resume_token=ready.resume_token)
    assert resumed[1].message.broadcast.ended


@pytest.mark.parametrize(
    "fields",
    [
        {"viewer_token_sha256": "ab" * 32},  # a token without a broadcast
        {"broadcast_ended": True},
        {"broadcast_id": "x" * 65},
        {"broadcast_id": ""},
    ],
)
def test_impossible_broadcast_states_read_from_kafka_are_refused(fields: dict) -> None:
    with pytest.raises(ValueError):
        SessionState.from_avro({**SessionState("s", "gw", 16000, 0).to_avro(), **fields})


def speech_events(sess: ClientSession) -> list[Produce]:
    """The audio events of one utterance of speech (then silence) fed through the session."""
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    out = sess.audio(pcm) + sess.handle(parse_client_message('{"type": "flush"}'))  # type: ignore[arg-type]
    return [o for o in out if isinstance(o, Produce)]


def test_the_viewers_languages_are_asked_of_the_workers_and_their_translations_kept_from_the_speaker() -> None:
    sess = session()
    send(sess, type="start", broadcast=True, source_lang="es", translate=True, target_lang="en")
    sess.audience_langs = ["pt", "es", "en", "fr"]  # es: the speaker's own, never translated
    events = speech_events(sess)
    assert events and all(e.event.targets == ["en", "pt", "fr"] and e.event.translate for e in events)

    def tr(target: str) -> Result:
        return Result(
            "s", 0, ResultKind.TRANSLATION, "hola", translation=Translation("es", target, "x", "m"), translate=True
        )

    assert sess.result(tr("en")) is not None  # asked for by the speaker
    assert sess.result(tr("pt")) is None  # only the viewers read it
    err = Result("s", 0, ResultKind.ERROR, "", target_lang="fr", error=ErrorInfo("unsupported_pair", "no"))
    assert sess.result(err) is None
    send(sess, type="end_broadcast")
    assert all(e.event.targets == ["en"] for e in speech_events(sess))  # an ended broadcast: its own only


def test_a_silent_broadcast_without_viewers_asks_for_nothing_more() -> None:
    sess = session()
    send(sess, type="start", broadcast=True)
    events = speech_events(sess)
    assert events and all(e.event.targets == [] and not e.event.translate for e in events)
