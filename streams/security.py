"""How cronbus reaches a secured Kafka and Redis: the settings' connection data (servers,
SASL, TLS files) as one value, and TLS contexts made from it. Every Kafka client
(:mod:`cronbus.clients.kafka.connect`, Faust's own) and every Redis client takes its options
from here, so a secured cluster is configured once, in ``CRONBUS_KAFKA_*`` / ``CRONBUS_REDIS_*``.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class TlsFiles(BaseModel):
    """A CA bundle to trust (else the system's), a client certificate and key (mutual TLS),
    and whether the server's name must match its certificate."""

    model_config = ConfigDict(frozen=True)

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: SecretStr | None = None
    check_hostname: bool = True

    def unloadable(self) -> dict[str, str]:
        """The files (``ca_file``, ``cert_file``) that cannot be loaded as PEM, and why."""
        problems = {}
        if self.ca_file:
            try:
                ssl.create_default_context(cafile=self.ca_file)
            except (ssl.SSLError, OSError) as exc:
                problems["ca_file"] = str(exc)
        if self.cert_file:
            try:
                self.context()
            except (ssl.SSLError, OSError) as exc:
                problems.setdefault("cert_file", str(exc))
        return problems

    def context(self) -> ssl.SSLContext:
        """A client-side TLS context (reads the files: call it when a client is made)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        context.check_hostname = self.check_hostname
        if self.cert_file:
            context.load_cert_chain(
                self.cert_file, self.key_file,
                self.key_password.get_secret_value() if self.key_password else None)
        return context


class KafkaAccess(BaseModel):
    """The bootstrap servers and how to authenticate and encrypt: what every Kafka client
    cronbus makes is given (a plain list of ``host:port`` means PLAINTEXT)."""

    model_config = ConfigDict(frozen=True)

    servers: tuple[str, ...]
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    tls: TlsFiles = TlsFiles()

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def aiokafka_options(self) -> dict[str, Any]:
        """The keyword arguments of every aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {"bootstrap_servers": list(self.servers),
                                   "security_protocol": self.security_protocol}
        if self.uses_tls:
            options["ssl_context"] = self.tls.context()
        if self.uses_sasl:
            options.update(
                sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                sasl_plain_password=(self.sasl_password.get_secret_value()
                                     if self.sasl_password else None))
        return options


def redis_options(url: str, tls: TlsFiles) -> dict[str, Any]:
    """redis-py's ``from_url`` keyword arguments for ``url``: TLS files for ``rediss://`` (a
    plain ``redis://`` connection takes none). AUTH (password, ACL user) is in the URL."""
    if not url.lower().startswith("rediss://"):
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": tls.check_hostname}
    if tls.ca_file:
        options["ssl_ca_certs"] = tls.ca_file
    if tls.cert_file:
        options["ssl_certfile"] = tls.cert_file
        options["ssl_keyfile"] = tls.key_file or tls.cert_file
    if tls.key_password:
        options["ssl_password"] = tls.key_password.get_secret_value()
    return options
