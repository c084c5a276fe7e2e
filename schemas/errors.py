"""The one root of every error Babelstream raises on purpose, so a caller can tell "ours, named" from a bug.

Each error is named for what happened, and keeps the built-in base that says what kind of failure it is
(``ValueError`` for a bad value, ``LookupError`` for something not found, ``RuntimeError`` for a part
that failed), so ``except ValueError`` still catches a bad record. The tree::

    BabelstreamError
    ├── ProtocolError            a client broke the WebSocket protocol (schemas.messages): told to it
    ├── ApiError                 an OpenAI-API request fails: an HTTP status and body (schemas.openai_api)
    ├── CodecError               a record cannot be read or written as its type (schemas.codec)
    │   └── UnknownSchema        ... because its writer schema cannot be resolved
    ├── RegistryError            the schema registry refused, or gave no usable answer (schemas.codec)
    ├── UnknownLanguage          a language code no engine or contract knows (schemas.langs)
    ├── AudioFormatError         audio that is not what its format says (core.audio.resample)
    ├── ModelNotAvailable        the model asked for is not installed (core.engines.models)
    ├── UnsupportedPair          no translation engine serves this language pair (core.engines.translate)
    ├── SpeechTranslationMissing a route needs Whisper's English and the result has none (core.translations)
    ├── KafkaError               Kafka failed us (streams.errors); aiokafka's own errors never leave streams
    │   ├── KafkaUnavailable     ... unreachable, or no answer in time: worth retrying later
    │   └── KafkaRejected        ... the cluster refused this record or this client: retrying cannot help
    │       └── RecordTooLarge   ... a record over MAX_MESSAGE_BYTES
    ├── BrokerError              the local development broker did not start (streams.broker)
    ├── AuthError                a request is refused: 401 or 403 (gateway.auth)
    ├── ClientGone               the client went away while the gateway waited on it (gateway.connection)
    ├── OutboxFull               more speech waits for Kafka than OUTAGE_BUFFER_S allows (gateway.outbox)
    └── LoadOverflow             more live results came while a transcript loaded than held (gateway.captions)
"""

from __future__ import annotations


class BabelstreamError(Exception):
    """The root of the tree above."""
