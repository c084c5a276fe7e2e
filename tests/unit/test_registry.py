"""The Confluent Schema Registry client, against a minimal in-process implementation of its REST API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from schemas.codec import AvroCodec
from schemas.records import AudioEvent, AudioEventKind, Result, ResultKind, SessionState
from streams.registry import ConfluentRegistry, RegistryError


@pytest.fixture
def registry_url() -> Iterator[str]:
    schemas: list[str] = []

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
            if body["schema"] not in schemas:
                schemas.append(body["schema"])
            self._reply(200, {"id": 1000 + schemas.index(body["schema"])})

        def do_GET(self) -> None:
            sid = int(self.path.rsplit("/", 1)[1]) - 1000
            if 0 <= sid < len(schemas):
                self._reply(200, {"schema": schemas[sid]})
            else:
                self._reply(404, {"error_code": 40403, "message": "Schema not found"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_registered_ids_go_on_the_wire_and_resolve_elsewhere(registry_url: str) -> None:
    writer = AvroCodec(Result, ConfluentRegistry(registry_url), "babel.results.v1-value")
    assert writer.schema_id == 1000
    data = writer.encode(Result("s", 1, ResultKind.FINAL, "hello"))
    assert data[:5] == b"\x00\x00\x00\x03\xe8"
    reader_registry = ConfluentRegistry(registry_url)  # another process: learns the id from the registry
    assert AvroCodec(Result, reader_registry, "babel.results.v1-value").decode(data).text == "hello"
    with pytest.raises(RegistryError, match="404"):
        reader_registry.schema_by_id(4242)


def test_unreachable_registry_is_a_clear_error() -> None:
    with pytest.raises(RegistryError, match="unreachable"):
        AvroCodec(Result, ConfluentRegistry("http://127.0.0.1:9", timeout_s=1), "x-value")


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
    assert pinned_ids()[record.SCHEMA] == {105: 106, 102: 107, 104: 108}[schema_id]
    decoded = AvroCodec(type(record), PinnedRegistry(), "x-value").decode(
        written_with(schema_file, schema_id, record.to_avro())
    )
    assert decoded.target_langs == []
    assert decoded.targets == ["pt"]
    record.target_langs = ["pt", "en"]
    codec = AvroCodec(type(record), PinnedRegistry(), "x-value")
    assert codec.decode(codec.encode(record)).targets == ["pt", "en"]
