"""Reading and writing through a schema registry with confluent-kafka's client and serializers, against an
in-process stand-in of the two REST calls (for its failure modes); pinned ids and schema history."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from schemas.codec import AvroCodec, CodecError
from schemas.records import AudioEvent, AudioEventKind, Result, ResultKind, SessionState
from streams.registry import ConfluentRegistry, RegistryCodec, RegistryError


class FakeRegistry:
    """The two calls of the Confluent REST API a codec makes, with a switch to answer 503 (a registry
    that is away) and a count of lookups; the real registry is tested in tests/integration."""

    def __init__(self) -> None:
        self.schemas: list[str] = []
        self.lookups = 0
        self.unavailable = 0  # answer this many lookups with 503 first
        self.conflicts = 0  # answer this many registrations with 409 first (Apicurio, two services at once)

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.conflicts > 0:
                    fake.conflicts -= 1
                    return self._reply(409, {"error_code": 409, "message": "An artifact already exists"})
                if body["schema"] not in fake.schemas:
                    fake.schemas.append(body["schema"])
                self._reply(200, {"id": 1000 + fake.schemas.index(body["schema"])})

            def do_GET(self) -> None:
                fake.lookups += 1
                if fake.unavailable > 0:
                    fake.unavailable -= 1
                    return self._reply(503, {"error_code": 50301, "message": "unavailable"})
                sid = int(self.path.split("?")[0].rsplit("/", 1)[1]) - 1000
                if 0 <= sid < len(fake.schemas):
                    return self._reply(200, {"schema": fake.schemas[sid]})
                return self._reply(404, {"error_code": 40403, "message": "Schema not found"})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def fake() -> Iterator[tuple[FakeRegistry, str]]:
    registry = FakeRegistry()
    server, url = registry.serve()
    yield registry, url
    server.shutdown()


def codec(url: str) -> RegistryCodec[Result]:
    return RegistryCodec(Result, ConfluentRegistry({"url": url}), "babel.results.v1")


async def test_registered_ids_go_on_the_wire_and_resolve_in_another_process(fake: tuple[FakeRegistry, str]) -> None:
    registry, url = fake
    writer = codec(url)
    assert writer.schema_id == 1000 and writer.subject == "babel.results.v1-value"
    data = writer.encode(Result("s", 1, ResultKind.FINAL, "hello"))
    assert data[:5] == b"\x00\x00\x00\x03\xe8"
    reader = codec(url)  # another process: learns the writer's schema from the registry, once
    assert (await reader.decode_async(data)).text == "hello"
    assert (await reader.decode_async(data)).text == "hello"
    assert registry.lookups <= 1


async def test_an_unknown_id_is_dead_lettered_and_not_asked_about_again(fake: tuple[FakeRegistry, str]) -> None:
    registry, url = fake
    reader = codec(url)
    bogus = b"\x00" + (4242).to_bytes(4, "big") + b"\x02"
    for _ in range(5):
        with pytest.raises(CodecError, match="4242"):
            await reader.decode_async(bogus)
    assert registry.lookups == 3  # three 404s (a replica may lag), then remembered: no request per record


async def test_while_the_registry_is_away_a_record_waits_instead_of_being_lost(fake: tuple[FakeRegistry, str]) -> None:
    registry, url = fake
    data = codec(url).encode(Result("s", 2, ResultKind.FINAL, "still here"))
    registry.unavailable = 2
    reader = codec(url)
    async with asyncio.timeout(20):
        assert (await reader.decode_async(data)).text == "still here"
    assert registry.lookups == 3


def test_an_unreachable_registry_at_start_up_is_a_clear_error() -> None:
    with pytest.raises(RegistryError, match="unreachable"):
        RegistryCodec(Result, ConfluentRegistry({"url": "http://127.0.0.1:9", "timeout": 1}), "x")


def written_with(schema_file: str, schema_id: int, row: dict) -> bytes:
    """A record as an older Babelstream wrote it: that schema's fields, that schema's id."""
    import io
    import struct

    from fastavro import parse_schema, schemaless_writer

    from schemas import SCHEMA_DIR

    old = parse_schema(json.loads((SCHEMA_DIR / "history" / schema_file).read_text()))
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id))
    schemaless_writer(buf, old, {k: v for k, v in row.items() if k in {f["name"] for f in old["fields"]}})
    return buf.getvalue()


def test_session_states_written_with_the_earlier_schema_stay_readable() -> None:
    """SessionState moved to id 104 (epoch, open utterance, token digest); records on the compacted topic
    written with id 103 decode with the new fields' defaults."""
    from schemas.codec import PinnedRegistry
    from schemas.records import SessionState

    data = written_with("session_state.103.avsc", 103, SessionState("s-old", "gw", 16000, 7).to_avro())
    st = AvroCodec(SessionState, PinnedRegistry(), "x-value").decode(data)
    assert (st.session_id, st.next_utterance_index) == ("s-old", 7)
    assert (st.epoch, st.open_utterance_index, st.resume_token_sha256) == (0, None, None)


def test_audio_events_written_with_the_earlier_schema_stay_readable() -> None:
    """AudioEvent moved to id 105 (the VAD's speech range on END); stored audio written with 101 replays."""
    from schemas.codec import PinnedRegistry
    from schemas.records import AudioEvent, AudioEventKind

    row = AudioEvent("s-old", 3, 2, AudioEventKind.END, b"", 1500, end_reason="silence").to_avro()
    ev = AvroCodec(AudioEvent, PinnedRegistry(), "x-value").decode(written_with("audio_event.101.avsc", 101, row))
    assert (ev.utterance_id, ev.seq, ev.end_reason) == ("s-old:3", 2, "silence")
    assert (ev.speech_start_ms, ev.speech_end_ms) == (None, None)


@pytest.mark.parametrize(
    ("schema_file", "schema_id", "make"),
    [
        (
            "audio_event.105.avsc",
            105,
            lambda: AudioEvent("s", 1, 0, AudioEventKind.CHUNK, b"\0\0", 0, target_lang="pt"),
        ),
        ("result.102.avsc", 102, lambda: Result("s", 1, ResultKind.FINAL, "hola", target_lang="pt", translate=True)),
        ("session_state.104.avsc", 104, lambda: SessionState("s", "gw", 16000, 2, target_lang="pt", translate=True)),
    ],
)
def test_records_from_before_target_langs_keep_their_one_target(schema_file: str, schema_id: int, make) -> None:
    """AudioEvent 106, Result 107 and SessionState 108 added ``target_langs``; a record written before
    (one ``target_lang``) still asks for that one translation, and the current ids are what is written."""
    from schemas.codec import PinnedRegistry, pinned_ids

    record = make()
    assert pinned_ids()[record.SCHEMA] == {105: 106, 102: 107, 104: 110}[schema_id]
    decoded = AvroCodec(type(record), PinnedRegistry(), "x-value").decode(
        written_with(schema_file, schema_id, record.to_avro())
    )
    assert decoded.target_langs == []
    assert decoded.targets == ["pt"]
    record.target_langs = ["pt", "en"]
    codec = AvroCodec(type(record), PinnedRegistry(), "x-value")
    assert codec.decode(codec.encode(record)).targets == ["pt", "en"]


def test_registry_settings_become_the_clients_configuration(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.settings import load_settings
    from streams.registry import registry_conf

    s = load_settings(
        schema_registry_url="https://registry.example:8081",
        schema_registry_basic_auth="svc:s3cret",
        schema_registry_ca_file=tmp_path / "ca.pem",
        schema_registry_cert_file=tmp_path / "me.pem",
        schema_registry_key_file=tmp_path / "me.key",
        schema_registry_subject_strategy="topic_record",
    )
    assert registry_conf(s) == {
        "url": "https://registry.example:8081",
        "timeout": 10.0,
        "basic.auth.user.info": "svc:s3cret",
        "ssl.ca.location": str(tmp_path / "ca.pem"),
        "ssl.certificate.location": str(tmp_path / "me.pem"),
        "ssl.key.location": str(tmp_path / "me.key"),
    }
    registry = ConfluentRegistry({"url": s.schema_registry_url}, s.schema_registry_subject_strategy)
    from confluent_kafka.serialization import MessageField, SerializationContext

    ctx = SerializationContext("babel.results.v1", MessageField.VALUE)
    assert registry.strategy(ctx, Result.SCHEMA) == "babel.results.v1-io.babelstream.results.Result"


def test_session_states_from_before_owners_resume_under_whoever_holds_the_token() -> None:
    """SessionState 109 added ``owner``: a state written with 108 decodes with none (the next resume sets it)."""
    from schemas.codec import PinnedRegistry
    from schemas.records import SessionState

    data = written_with("session_state.108.avsc", 108, SessionState("s-old", "gw", 16000, 3, owner="x").to_avro())
    st = AvroCodec(SessionState, PinnedRegistry(), "x-value").decode(data)
    assert (st.session_id, st.next_utterance_index, st.owner) == ("s-old", 3, None)


def test_session_states_from_before_broadcasts_are_no_broadcast() -> None:
    """SessionState 110 added the broadcast fields: a state written with 109 decodes as no broadcast."""
    from schemas.codec import PinnedRegistry
    from schemas.records import SessionState

    data = written_with("session_state.109.avsc", 109, SessionState("s-old", "gw", 16000, 3, owner="x").to_avro())
    st = AvroCodec(SessionState, PinnedRegistry(), "x-value").decode(data)
    assert (st.owner, st.broadcast_id, st.viewer_token_sha256, st.broadcast_ended) == ("x", None, None, False)


@pytest.mark.parametrize(
    ("record", "said"),
    [
        (lambda: Result("s", -1, ResultKind.FINAL, "x"), "utterance_index=-1 is negative"),
        (lambda: Result("s", 0, ResultKind.FINAL, "x", audio_start_ms=900, audio_end_ms=100), "before audio_start_ms"),
        (lambda: Result("s", 0, ResultKind.FINAL, "x", language_probability=7.0), "not a probability"),
        (lambda: Result("s", 0, ResultKind.ERROR), "without its error"),
        (lambda: Result("s", 0, ResultKind.TRANSLATION, "x"), "without its translation"),
        (lambda: Result("", 0, ResultKind.FINAL, "x"), "empty session_id"),
        (lambda: SessionState("s", "gw", 16000, 0, channels=0), "channels=0"),
        (lambda: SessionState("s", "gw", 16000, 0, encoding="mp3"), "encoding='mp3'"),
        (lambda: SessionState("s", "gw", 0, 0), "input_sample_rate_hz=0"),
        (lambda: SessionState("s", "gw", 16000, -2, open_utterance_index=-1), "next_utterance_index=-2"),
        (lambda: AudioEvent("s", 0, -1, AudioEventKind.CHUNK, b"", 0, speech_end_ms=-5), "speech_end_ms=-5"),
    ],
)
def test_decodable_but_absurd_records_are_invalid(record, said: str) -> None:  # type: ignore[no-untyped-def]
    """Every record type read from Kafka is checked, not only audio events: the message names the problem."""
    from schemas.codec import PinnedRegistry

    r = record()
    codec = AvroCodec(type(r), PinnedRegistry(), "x-value")
    data = codec.encode(r)  # writing does not check: a hostile or buggy producer can write anything
    with pytest.raises(CodecError, match=re.escape(said)):
        codec.decode(data)


def test_services_registering_one_subject_at_once_all_start(fake: tuple[FakeRegistry, str]) -> None:
    """Apicurio answers a concurrent registration of the same subject with 409: it is tried again."""
    registry, url = fake
    registry.conflicts = 2
    assert codec(url).schema_id == 1000
    registry.conflicts = 99  # a registry that keeps refusing: a clear error, not a hang
    with pytest.raises(RegistryError, match="refused"):
        RegistryCodec(AudioEvent, ConfluentRegistry({"url": url}), "babel.audio.v1")
