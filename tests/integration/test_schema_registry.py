"""The pipeline with a real Confluent-compatible schema registry (Apicurio Registry, built from Maven
Central by tests/registry.py, its ccompat API): schemas registered under TopicNameStrategy subjects, the
registry's ids on the wire, a value with an id the registry never issued dead-lettered without stopping
the stream, and the registry gone: what is known keeps flowing, a new service refuses to start. A second
registry serves mutual TLS only: the settings' CA, certificate and key files reach it; without them the
error says TLS."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from babelstream.client import stream_audio
from core.settings import load_settings
from schemas.records import Result, ResultKind
from streams.reader import read_range, topic_partitions
from streams.registry import ConfluentRegistry, RegistryCodec, RegistryError
from tests.audio import librivox, wer
from tests.integration.test_poison import produce_everywhere, wait_dead_letters
from tests.registry import Apicurio, RegistryTls
from tests.stack import Stack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def apicurio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apicurio]:
    registry = Apicurio(Path(tmp_path_factory.mktemp("apicurio"))).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def registered(kafka_bootstrap: str, apicurio: Apicurio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = Stack(
        kafka_bootstrap,
        Path(tmp_path_factory.mktemp("registry-stack")),
        {"AUDIO_PARTITIONS": "2", "RESULTS_PARTITIONS": "1", "MODEL_SIZE": "base", "SCHEMA_REGISTRY_URL": apicurio.url},
    )
    try:
        gw, stt, tr = st.start_gateway(), st.start_worker("stt"), st.start_worker("translate")
        st.wait_healthy([gw, stt, tr], timeout_s=180)
        st.wait_assigned([stt], partitions=2, timeout_s=120)
        yield st
    finally:
        st.stop()


async def first_value(bootstrap: str, topic: str) -> bytes:
    async for rec in read_range(bootstrap, await topic_partitions(bootstrap, topic)):
        assert rec.value is not None
        return rec.value
    raise AssertionError(f"{topic} is empty")


async def test_records_carry_the_registrys_ids_and_the_pipeline_reads_them(
    registered: Stack, apicurio: Apicurio
) -> None:
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
    rep = await stream_audio(
        registered.ws_url, pcm, pace=0, timeout_s=120, source_lang="en", target_lang="pt", translate=True
    )
    assert wer(ref, rep.text) < 0.2 and len(rep.translations) == len(rep.finals) >= 1, rep.messages
    prefix = registered.prefix
    subjects = {f"{prefix}.audio.v1-value", f"{prefix}.results.v1-value", f"{prefix}.sessions.v1-value"}
    assert subjects <= set(await asyncio.to_thread(apicurio.subjects))
    for topic in ("audio", "results", "sessions"):
        value = await first_value(registered.bootstrap, f"{prefix}.{topic}.v1")
        registry_id = await asyncio.to_thread(apicurio.latest_id, f"{prefix}.{topic}.v1-value")
        assert value[0] == 0 and int.from_bytes(value[1:5], "big") == registry_id  # not the pinned 106/107/108


async def test_an_id_the_registry_never_issued_is_dead_lettered_and_the_stream_goes_on(registered: Stack) -> None:
    prefix = registered.prefix
    bogus = b"\x00" + (987654).to_bytes(4, "big") + b"\x02\x00"
    await produce_everywhere(registered.bootstrap, f"{prefix}.audio.v1", b"liar-session", [bogus, bogus])
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0930")
    rep = await stream_audio(registered.ws_url, pcm, pace=0, timeout_s=120, source_lang="en")
    assert wer(ref, rep.text) < 0.2
    dead = await wait_dead_letters(
        registered.bootstrap,
        f"{prefix}.dlq.v1",
        lambda seen: sum(d.get("babelstream.errors.stage") == "stt" for d in seen) >= 4,
        timeout_s=60,
    )
    stt = [d for d in dead if d.get("babelstream.errors.stage") == "stt"]
    assert all("987654" in d["__connect.errors.exception.message"] for d in stt)


async def test_with_the_registry_gone_known_schemas_keep_flowing_and_new_services_refuse_to_start(
    registered: Stack, apicurio: Apicurio
) -> None:
    await asyncio.to_thread(apicurio.stop)
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
    rep = await stream_audio(
        registered.ws_url, pcm, pace=0, timeout_s=120, source_lang="en", target_lang="pt", translate=True
    )
    assert wer(ref, rep.text) < 0.2 and len(rep.translations) == len(rep.finals) >= 1
    env = registered.env(GATEWAY_PORT="0", HEALTH_PORT="0")
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "babelstream.cli", "gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "unreachable" in out.stdout + out.stderr, out.stderr[-2000:]


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apicurio]:
    folder = Path(tmp_path_factory.mktemp("apicurio-tls"))
    registry = Apicurio(folder, tls=RegistryTls.make(folder)).start()
    yield registry
    registry.stop()


async def test_a_registry_that_requires_mutual_tls_gets_the_settings_files(tls_registry: Apicurio) -> None:
    tls = tls_registry.tls
    assert tls is not None and tls_registry.url.startswith("https://")
    files = {
        "schema_registry_ca_file": tls.cert,
        "schema_registry_cert_file": tls.client_cert,
        "schema_registry_key_file": tls.client_key,
    }

    def codec(**settings: object) -> RegistryCodec[Result]:
        s = load_settings(schema_registry_url=tls_registry.url, **settings)
        return RegistryCodec(Result, ConfluentRegistry.from_settings(s), "babel.results.v1")

    writer = codec(**files)
    assert writer.schema_id == tls_registry.latest_id(writer.subject)
    data = writer.encode(Result("s", 1, ResultKind.FINAL, "over mutual TLS"))
    reader = codec(**files)  # its async client learns the writer's schema over TLS too
    assert (await reader.decode_async(data)).text == "over mutual TLS"
    without = {
        "a client certificate": ("schema_registry_cert_file", "schema_registry_key_file"),
        "a CA": ("schema_registry_ca_file",),
    }
    for what, names in without.items():
        with pytest.raises(RegistryError, match="TLS failed") as refused:
            codec(**{k: v for k, v in files.items() if k not in names})
        assert "SCHEMA_REGISTRY_CA_FILE" in str(refused.value), what
