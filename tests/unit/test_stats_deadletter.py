"""Stats count each result once; the dead-letter policy copies a bad record with where and why."""

from __future__ import annotations

from dataclasses import dataclass

from core.analytics import stats
from schemas.codec import AvroCodec, PinnedRegistry
from schemas.records import AudioEvent, AudioEventKind, Result, ResultKind, Translation
from streams.deadletter import DeadLetters


def test_a_redelivered_final_is_counted_once() -> None:
    w = stats.empty_window(0, 60)
    final = Result("s", 0, ResultKind.FINAL, "one two three", language="en")
    tr = Result("s", 0, ResultKind.TRANSLATION, translation=Translation("en", "pt", "um", "x"))
    for r in (final, tr, final, tr, Result("s", 1, ResultKind.FINAL, "four", language="en")):
        w = stats.add_result(w, r)
    assert (w["finals"], w["words"], w["translations"], w["languages"]) == (2, 4, 1, {"en": 2})
    legacy = {k: v for k, v in stats.empty_window(0, 60).items() if k != "counted"}  # stored before dedup
    assert stats.add_result(legacy, final)["finals"] == 1


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def test_bad_records_are_dead_lettered_with_their_origin() -> None:
    sent: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []

    async def publish(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        sent.append((key, value, dict(headers)))

    dl = DeadLetters("stt", publish)
    codec = AvroCodec(AudioEvent, PinnedRegistry(), "x-value")
    good = AudioEvent("s", 0, 0, AudioEventKind.CHUNK, b"\x01\x02", 0)
    assert await dl.decode(codec, Rec("a", 1, 5, b"s", codec.encode(good))) == good
    bad = [
        None,  # empty value
        b"\x00\x00\x00\x03\xe7" + codec.encode(good)[5:],  # unknown schema id
        codec.encode(AudioEvent("s", 0, 0, AudioEventKind.CHUNK, b"\x01\x02", 0, sample_rate_hz=0)),
        codec.encode(AudioEvent("s", 0, 0, AudioEventKind.CHUNK, b"\x01\x02\x03", 0)),  # odd-length PCM
    ]
    for i, value in enumerate(bad):
        assert await dl.decode(codec, Rec("a", 1, 10 + i, b"s", value)) is None
    assert [v for _, v, _ in sent] == bad
    first = sent[0][2]
    assert first["__connect.errors.topic"] == b"a" and first["__connect.errors.partition"] == b"1"
    assert first["__connect.errors.offset"] == b"10" and first["babelstream.errors.stage"] == b"stt"
    assert b"sample_rate_hz=0" in sent[2][2]["__connect.errors.exception.message"]
    assert b"whole number of samples" in sent[3][2]["__connect.errors.exception.message"]
