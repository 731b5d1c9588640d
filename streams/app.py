"""The Faust app factory. Nothing here runs at import time.

Faust hosts the worker (web server, services, signals); every Kafka client of cronbus's own is
made in :mod:`cronbus.clients.kafka.connect`, where the topics are made too."""

from __future__ import annotations

from pathlib import Path

import faust
from faust.types.auth import CredentialsT

from cronbus.streams.settings import Settings


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured from ``settings``; agents are added by the caller."""
    return faust.App(
        settings.app_id,
        broker=settings.faust_broker,
        broker_credentials=broker_credentials(settings),
        store="memory://",  # tables are rebuilt from their changelog topics at start
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # aiohttp stops reading a body past this (413): Content-Length or chunked alike
        web_application_options={"client_max_size": settings.web_max_body_bytes},
        datadir=str(Path(settings.data_dir) / settings.app_id),
        # our handlers catch per record; a crash must not commit past unprocessed records
        stream_wait_empty=False,
    )


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's own broker connection, secured as every other client (``Settings.kafka``)."""
    kafka = settings.kafka
    context = kafka.tls.context() if kafka.uses_tls else None
    if kafka.uses_sasl:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        return faust.SASLCredentials(username=kafka.sasl_username, password=password,
                                     ssl_context=context, mechanism=kafka.sasl_mechanism)
    return faust.SSLCredentials(context) if context is not None else None
