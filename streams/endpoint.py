"""How every Kafka client of Babelstream reaches the cluster: bootstrap servers plus security (TLS, SASL
PLAIN or SCRAM) for managed clusters, built once from the settings and handed to each client.

The producer, the topic follower, the range reader, the admin helpers and the Faust app all take a
:class:`KafkaEndpoint` (or a plain bootstrap string: a PLAINTEXT cluster, as the local broker is).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context

from core.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaEndpoint:
    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None  # None: the system's trusted CAs
    ssl_certfile: str | None = None  # client certificate (mutual TLS)
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}")
        if self.sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise ValueError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}")
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError("SASL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")

    @classmethod
    def from_settings(cls, s: Settings) -> KafkaEndpoint:
        return cls(
            s.bootstrap,
            s.kafka_security_protocol,
            s.kafka_sasl_mechanism,
            s.kafka_sasl_username,
            s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else None,
            str(s.kafka_ssl_cafile) if s.kafka_ssl_cafile else None,
            str(s.kafka_ssl_certfile) if s.kafka_ssl_certfile else None,
            str(s.kafka_ssl_keyfile) if s.kafka_ssl_keyfile else None,
        )

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    @property
    def tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return create_ssl_context(cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.tls:
            kw["ssl_context"] = self.ssl_context()
        if self.sasl:
            kw.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        return kw

    def faust_credentials(self) -> faust.SASLCredentials | faust.SSLCredentials | None:
        if self.sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                ssl_context=self.ssl_context(),
                mechanism=self.sasl_mechanism,
            )
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None


Kafka = KafkaEndpoint | str  # a plain string: bootstrap servers of a PLAINTEXT cluster


def endpoint(kafka: Kafka) -> KafkaEndpoint:
    return kafka if isinstance(kafka, KafkaEndpoint) else KafkaEndpoint(kafka)
