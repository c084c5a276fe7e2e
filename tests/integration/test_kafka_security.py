"""Managed-cluster security: a local broker with a SASL_SSL listener (certificate made here, PLAIN and
SCRAM-SHA-256 users), reached by every kind of Babelstream client, the Faust STT worker and the gateway
included, with real speech end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from babelstream.client import stream_audio
from schemas.records import Result, ResultKind
from streams.broker import LocalKafka, SecureListener
from streams.deadletter import DeadLetters
from streams.endpoint import KafkaEndpoint
from streams.errors import KafkaUnavailable
from streams.producer import EventProducer
from streams.reader import read_session_results
from streams.topics import Codecs, ensure_topics, partition_ids, topic_specs
from tests.audio import librivox, wer
from tests.certs import self_signed
from tests.stack import Stack

pytestmark = pytest.mark.timeout(300)

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, Path]]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    cert, key = self_signed(folder)
    keystore = folder / "keystore.pem"
    keystore.write_bytes(key.read_bytes() + cert.read_bytes())
    broker = LocalKafka(folder / "data", heap_mb=320, secure=SecureListener(keystore, USERS))
    with broker:
        yield broker, cert


def endpoint_of(broker: LocalKafka, cert: Path, mechanism: str, user: str = "alice", password: str | None = None):
    return KafkaEndpoint(
        broker.secure_bootstrap,
        "SASL_SSL",
        mechanism,
        user,
        USERS[user] if password is None else password,
        ssl_cafile=str(cert),
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_produce_and_read_back_over_sasl_ssl(secure_broker: tuple[LocalKafka, Path], mechanism: str) -> None:
    from core.settings import load_settings

    broker, cert = secure_broker
    kafka = endpoint_of(broker, cert, mechanism)
    s = load_settings(kafka_bootstrap_servers=broker.secure_bootstrap, topic_prefix=f"sec{mechanism[:4].lower()}")
    topics = topic_specs(s)
    codecs = Codecs.create(s, topics)
    await ensure_topics(kafka, topics.all())
    assert await partition_ids(kafka, topics.results.name)
    async with EventProducer(kafka, topics, codecs) as producer:
        await (await producer.send_result(Result("sec-1", 0, ResultKind.FINAL, "over tls")))
    got = await read_session_results(kafka, topics.results.name, codecs, "sec-1", DeadLetters("test", None))
    assert [r.text for r in got] == ["over tls"]


async def test_a_wrong_password_is_refused(
    secure_broker: tuple[LocalKafka, Path], caplog: pytest.LogCaptureFixture
) -> None:
    broker, cert = secure_broker
    kafka = endpoint_of(broker, cert, "SCRAM-SHA-256", password="wrong")
    with pytest.raises(KafkaUnavailable, match="bootstrap"):
        await asyncio.wait_for(partition_ids(kafka, "anything", timeout_ms=10_000), 30)
    assert "SaslAuthenticationFailed" in caplog.text  # the client's log names the cause


def test_endpoint_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME"):
        KafkaEndpoint("h:1", "SASL_SSL", "PLAIN")
    with pytest.raises(ValueError, match="KAFKA_SASL_MECHANISM"):
        KafkaEndpoint("h:1", "SASL_PLAINTEXT", "GSSAPI", "u", "p")
    assert KafkaEndpoint("h:1").client_kwargs() == {"bootstrap_servers": "h:1", "security_protocol": "PLAINTEXT"}


def test_gateway_and_faust_worker_over_sasl_ssl(secure_broker: tuple[LocalKafka, Path], tmp_path: Path) -> None:
    broker, cert = secure_broker
    st = Stack(
        broker.secure_bootstrap,
        tmp_path,
        {
            "AUDIO_PARTITIONS": "2",
            "RESULTS_PARTITIONS": "1",
            "MODEL_SIZE": "tiny.en",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "KAFKA_SASL_USERNAME": "bob",
            "KAFKA_SASL_PASSWORD": USERS["bob"],
            "KAFKA_SSL_CAFILE": str(cert),
        },
    )
    try:
        gw = st.start_gateway()
        stt = st.start_worker("stt")
        st.wait_healthy([gw, stt], timeout_s=180)
        st.wait_assigned([stt], partitions=2, timeout_s=120)
        pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
        rep = asyncio.run(stream_audio(st.ws_url, pcm, pace=0, source_lang="en", timeout_s=120))
        assert wer(ref, rep.text) < 0.3, rep.text
    finally:
        st.stop()
