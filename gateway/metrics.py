"""Prometheus metrics of the gateway (served on the health port at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

CLIENTS = Gauge("babelstream_gateway_clients", "Connected WebSocket clients")
AUDIO_BYTES = Counter("babelstream_gateway_audio_bytes_total", "Audio bytes received from clients")
CHUNKS = Counter("babelstream_gateway_chunks_total", "Audio chunk events produced to Kafka")
SEGMENTS = Counter("babelstream_gateway_segments_total", "Utterances closed by the VAD", ["reason"])
RESULTS = Counter("babelstream_gateway_results_total", "Results delivered to clients", ["type"])
ERRORS = Counter("babelstream_gateway_errors_total", "Errors reported to clients", ["code"])
QUEUE_DEPTH = Histogram(
    "babelstream_gateway_client_queue_depth",
    "Outgoing queue depth at enqueue",
    buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
SLOW_CLIENTS = Counter("babelstream_gateway_slow_clients_total", "Clients closed for not reading")
RESULT_LATENCY_S = Histogram(
    "babelstream_gateway_result_latency_seconds", "From newest audio produced to result delivered", ["type"]
)
KAFKA_UP = Gauge("babelstream_gateway_kafka_up", "1 when the last Kafka metadata request succeeded")
TAKEOVERS = Counter("babelstream_gateway_takeovers_total", "Connections closed because their session resumed elsewhere")
PACED_S = Counter(
    "babelstream_gateway_paced_seconds_total", "Seconds clients were held back for sending audio too fast"
)
SESSIONS_EXPIRED = Counter("babelstream_gateway_sessions_expired_total", "Session states tombstoned after their TTL")
AUTH_FAILURES = Counter("babelstream_gateway_auth_failures_total", "Handshakes refused", ["reason"])
OUTBOX_BYTES = Gauge("babelstream_gateway_outbox_bytes", "Speech waiting for Kafka in the sessions' outboxes")
OUTBOX_OVERFLOWS = Counter(
    "babelstream_gateway_outbox_overflows_total",
    "Sessions ended because more speech waited for Kafka than OUTAGE_BUFFER_S",
)
VIEWERS = Gauge("babelstream_gateway_viewers", "Broadcast viewers connected (WebSocket and SSE)")
BROADCASTS = Gauge("babelstream_gateway_broadcasts_watched", "Broadcasts with viewers on this gateway")
VIEWERS_REFUSED = Counter("babelstream_gateway_viewers_refused_total", "Viewers not let in", ["reason"])
VIEWERS_DROPPED = Counter("babelstream_gateway_viewers_dropped_total", "Viewers closed by the gateway", ["reason"])
CAPTIONS = Counter(
    "babelstream_gateway_captions_total", "Captions made for viewers (once per language)", ["type", "lang"]
)
BACKLOG_CAPTIONS = Counter(
    "babelstream_gateway_backlog_captions_total", "Captions of the transcript so far sent to joining viewers"
)
CHANNEL_LOADS = Counter(
    "babelstream_gateway_caption_loads_total",
    "Transcripts read from the results topic for a language's first viewer here",
)
