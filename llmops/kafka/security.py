"""How our Kafka clients authenticate: one description, three client libraries.

Settings hold the standard names (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE,
KAFKA_SSL_KEYFILE); every client we create (aiokafka producers and consumers, kafka-python's
admin, the faust worker) gets the same from here, so no client connects unauthenticated to a
broker that wants SASL or TLS. The broker's ACLs (infra/kafka/acls.yaml) then give each
service's principal only the topics and groups it needs.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from llmops.config import Settings

SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")


class KafkaSecurityError(ValueError):
    """The security settings contradict each other."""


@dataclass(frozen=True)
class KafkaSecurity:
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def __post_init__(self) -> None:
        sasl = self.security_protocol in SASL_PROTOCOLS
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise KafkaSecurityError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise KafkaSecurityError(
                f"SASL settings are given but KAFKA_SECURITY_PROTOCOL={self.security_protocol}"
                f"; use one of {', '.join(SASL_PROTOCOLS)}"
            )
        files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if self.security_protocol not in TLS_PROTOCOLS and any(files):
            raise KafkaSecurityError(
                f"TLS files are given but KAFKA_SECURITY_PROTOCOL={self.security_protocol}"
                f"; use one of {', '.join(TLS_PROTOCOLS)}"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise KafkaSecurityError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE")

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        password = settings.kafka_sasl_password
        return cls(
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password is not None else None,
            ssl_cafile=settings.kafka_ssl_cafile,
            ssl_certfile=settings.kafka_ssl_certfile,
            ssl_keyfile=settings.kafka_ssl_keyfile,
        )

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in TLS_PROTOCOLS

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context (verifying the broker against the CA file, else the system
        store), or None without TLS. Reads the files: call it where a client is made."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile is not None:
            context.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return context

    def _sasl(self) -> dict[str, Any]:
        if self.security_protocol not in SASL_PROTOCOLS:
            return {}
        return {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
        }

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's and kafka-python's clients (same names in both)."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol, **self._sasl()}
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def faust_credentials(self) -> CredentialsT | None:
        """faust's `broker_credentials`: None for PLAINTEXT."""
        import faust

        context = self.ssl_context()
        if self.security_protocol in SASL_PROTOCOLS:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None


# The default of every client whose caller gives no security: no SASL, no TLS (a local broker).
PLAINTEXT = KafkaSecurity()
