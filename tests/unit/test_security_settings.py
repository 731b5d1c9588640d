"""Kafka SASL/TLS and Redis TLS settings: checked together, given to every client, their
failures named by the setting to fix, and no secret in any message."""

from __future__ import annotations

import ssl

import faust
import pytest
from aiokafka.errors import KafkaConnectionError, UnsupportedSaslMechanismError

from cronbus.clients.kafka import connect
from cronbus.clients.network import reach
from cronbus.streams.app import broker_credentials
from cronbus.streams.security import KafkaAccess, TlsFiles, redis_options
from cronbus.streams.settings import Settings, SettingsError, load_settings

SASL = {"CRONBUS_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "CRONBUS_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "CRONBUS_KAFKA_SASL_USERNAME": "alice", "CRONBUS_KAFKA_SASL_PASSWORD": "pa55-s3cret"}


def settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_sasl_ssl_reaches_aiokafka_and_faust_with_the_mechanism_and_credentials(monkeypatch):
    settings = settings_from(monkeypatch, {**SASL, "CRONBUS_KAFKA_SSL_CHECK_HOSTNAME": "false"})
    options = settings.kafka.aiokafka_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SCRAM-SHA-512", "alice", "pa55-s3cret")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname is False
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED

    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("alice", "pa55-s3cret")


def test_ssl_alone_gives_faust_a_tls_context_and_plaintext_gives_nothing(monkeypatch):
    assert broker_credentials(load_settings()) is None
    assert load_settings().kafka.aiokafka_options() == {
        "bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}
    settings = settings_from(monkeypatch, {"CRONBUS_KAFKA_SECURITY_PROTOCOL": "SSL"})
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert "sasl_mechanism" not in settings.kafka.aiokafka_options()


async def test_every_client_connect_makes_carries_the_security_settings(monkeypatch):
    access = settings_from(monkeypatch, SASL).kafka
    producer = connect.producer(access)
    consumer = connect.reader(access, "t")
    admin = connect.admin(access)
    for client in (producer.client, consumer._client, admin._client):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_username == "alice"
    # a plain host:port list (tests, benches) is PLAINTEXT
    assert connect.access(["h:1"]) == KafkaAccess(servers=("h:1",))


@pytest.mark.parametrize("env, named", [
    ({"CRONBUS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CRONBUS_KAFKA_SASL_PASSWORD": "x"},
     "CRONBUS_KAFKA_SASL_USERNAME must be set with CRONBUS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    ({"CRONBUS_KAFKA_SASL_USERNAME": "alice"},
     "CRONBUS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL"),
    ({"CRONBUS_KAFKA_SSL_CA_FILE": "/etc/hostname"},
     "CRONBUS_KAFKA_SSL_CA_FILE set, but CRONBUS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS"),
    ({"CRONBUS_KAFKA_SECURITY_PROTOCOL": "SSL", "CRONBUS_KAFKA_SSL_CA_FILE": "/no/such.pem"},
     "CRONBUS_KAFKA_SSL_CA_FILE='/no/such.pem': no readable file there"),
    ({"CRONBUS_REDIS_SSL_KEY_FILE": "/etc/hostname"},
     "CRONBUS_REDIS_SSL_KEY_FILE is set without CRONBUS_REDIS_SSL_CERT_FILE"),
    ({"CRONBUS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CRONBUS_KAFKA_SECURITY_PROTOCOL='TLS' is invalid"),
    ({"CRONBUS_KAFKA_SASL_MECHANISM": "GSSAPI"}, "CRONBUS_KAFKA_SASL_MECHANISM='GSSAPI' is invalid"),
])
def test_settings_that_cannot_work_are_named_and_the_password_never_shown(monkeypatch, env, named):
    monkeypatch.setenv("CRONBUS_KAFKA_SASL_PASSWORD", "pa55-s3cret")
    with pytest.raises(SettingsError) as raised:
        settings_from(monkeypatch, env)
    assert named in str(raised.value)
    assert "pa55-s3cret" not in str(raised.value)


def test_rediss_urls_get_the_tls_files_and_plain_ones_none():
    tls = TlsFiles(ca_file="/ca.pem", cert_file="/client.pem", key_file="/client.key")
    assert redis_options("redis://:pw@h:6379/0", tls) == {}
    assert redis_options("rediss://:pw@h:6380/0", tls) == {
        "ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": "/ca.pem",
        "ssl_certfile": "/client.pem", "ssl_keyfile": "/client.key"}
    bridge = Settings(redis_url="redis://h/0", bridge_redis_url="rediss://b/0")
    assert bridge.redis_options() == {}
    assert bridge.redis_options(bridge.bridge_redis)["ssl_cert_reqs"] == "required"


SCRAM = KafkaAccess(servers=("b:9093",), security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
                    sasl_username="alice", sasl_password="pa55-s3cret",
                    tls=TlsFiles(ca_file="/etc/kafka-ca.pem"))


@pytest.mark.parametrize("failure, starts", [
    (KeyError("v"), "CRONBUS_KAFKA_SASL_PASSWORD: b:9093 refused user 'alice' (SCRAM-SHA-256)"),
    (UnsupportedSaslMechanismError(), "CRONBUS_KAFKA_SASL_MECHANISM=SCRAM-SHA-256: b:9093 does not"),
    (KafkaConnectionError("closed"), "CRONBUS_KAFKA_SASL_MECHANISM=SCRAM-SHA-256: b:9093 closed"),
    (ssl.SSLCertVerificationError("unable to get local issuer certificate"),
     "CRONBUS_KAFKA_SSL_CA_FILE: the certificate of b:9093 is not trusted by /etc/kafka-ca.pem"),
    (TimeoutError(), "CRONBUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL: no TLS handshake with b:9093"),
])
def test_a_failed_handshake_names_the_setting_to_fix(failure, starts):
    said = str(reach.handshake_failure(SCRAM, "b:9093", failure, 5.0))
    assert said.startswith(starts), said
    assert "pa55-s3cret" not in said


def test_a_file_that_is_no_pem_is_named_at_start(monkeypatch, tmp_path):
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(SettingsError) as raised:
        settings_from(monkeypatch, {"CRONBUS_KAFKA_SECURITY_PROTOCOL": "SSL",
                                    "CRONBUS_KAFKA_SSL_CA_FILE": str(garbage),
                                    "CRONBUS_REDIS_SSL_CERT_FILE": str(garbage)})
    said = str(raised.value)
    assert "CRONBUS_KAFKA_SSL_CA_FILE cannot be loaded" in said
    assert "CRONBUS_REDIS_SSL_CERT_FILE cannot be loaded" in said
