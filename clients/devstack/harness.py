"""The development stack: broker, Redis and the development APIs (the default ``api``, the world
API, the notification API), on free ports.

Tests and ``make run`` use the same stack. ``CRONBUS_BROKER_URL`` pointing at a real
Kafka cluster skips the embedded broker; Redis at ``CRONBUS_REDIS_URL`` is used when it
answers, otherwise one is started here.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx

from cronbus.clients.devstack.broker import EmbeddedBroker
from cronbus.clients.devstack.dev_api import DevApi
from cronbus.clients.devstack.notification_api import NotificationApi
from cronbus.clients.devstack.processes import ManagedProcess, free_port
from cronbus.clients.devstack.redis_server import RedisServer
from cronbus.clients.devstack.s3_server import S3Server
from cronbus.clients.devstack.tls import CertificateFiles, TlsFront
from cronbus.clients.devstack.world_api import WorldApi
from cronbus.streams.settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = Settings.model_fields["redis_url"].default
API_START_TIMEOUT_S = 20.0


class DevStack:
    """Starts what cronbus talks to and stops all of it, in reverse order, by pid."""

    def __init__(self, log_dir: Path | None = None, *, with_api: bool = True,
                 broker_tls: CertificateFiles | None = None, broker_client_cert: bool = False,
                 broker_authentication: bool = False, broker_on_s3: bool = False) -> None:
        """``broker_tls``: the broker only behind TLS with these certificates (and, with
        ``broker_client_cert``, only for clients with a certificate of their CA);
        ``broker_authentication``: SASL required (Tansu's ``--authentication``);
        ``broker_on_s3``: the broker stores on a local S3 server (a restart keeps its topics)."""
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="cronbus-stack-"))
        self.external_broker = os.environ.get(Settings.env_name("broker_url"))
        self.broker_tls = broker_tls
        self.broker_client_cert = broker_client_cert
        self.tls_front: TlsFront | None = None
        front_port = free_port() if broker_tls is not None else None
        self.s3 = S3Server(self.log_dir) if broker_on_s3 and not self.external_broker else None
        self.broker = None if self.external_broker else EmbeddedBroker(
            self.log_dir, advertised_port=front_port, authentication=broker_authentication,
            s3=self.s3)
        if broker_tls is not None and self.broker is not None:
            self.tls_front = TlsFront(self.broker.port, broker_tls, self.log_dir, port=front_port,
                                      require_client_cert=broker_client_cert)
        self.redis = RedisServer(
            os.environ.get(Settings.env_name("redis_url"), DEFAULT_REDIS_URL), self.log_dir
        )
        self.api = DevApi(self.log_dir) if with_api else None
        # the world-time family's service (CRONBUS_SERVICES__WORLD__URL)
        self.world = WorldApi(self.log_dir) if with_api else None
        # the notification family's service (CRONBUS_SERVICES__NOTIFICATIONS__URL)
        self.notifications = NotificationApi(self.log_dir) if with_api else None

    @property
    def broker_url(self) -> str:
        if self.tls_front is not None:
            return f"kafka://127.0.0.1:{self.tls_front.port}"
        if self.broker is not None:
            return self.broker.url
        assert self.external_broker is not None
        return self.external_broker

    def start(self) -> DevStack:
        try:
            if self.s3 is not None:
                self.s3.start()
            if self.broker is not None:
                self.broker.start()
            if self.tls_front is not None:
                self.tls_front.start()
            self.redis.start()
            # the development APIs start side by side (each takes a second or two to import)
            apis = [api for api in (self.api, self.world, self.notifications) if api is not None]
            for api in apis:
                api.launch()
            for api in apis:
                api.wait_listening(API_START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        log.info("dev stack up: broker %s, redis %s, api %s",
                 self.broker_url, self.redis.url, self.api and self.api.url)
        return self

    def stop(self) -> None:
        for part in (self.notifications, self.world, self.api, self.redis, self.tls_front,
                     self.broker, self.s3):
            if part is not None:
                part.stop()

    def processes(self) -> list[ManagedProcess]:
        """The child processes this stack started (a Redis or broker found running is not one)."""
        parts = [self.s3, self.broker, self.tls_front, self.redis, self.api, self.world,
                 self.notifications]
        found = [getattr(part, "process", None) for part in parts if part is not None]
        return [process for process in found if isinstance(process, ManagedProcess)
                and process.pid is not None]

    def env(self) -> dict[str, str]:
        """The settings a cronbus process needs to use this stack."""
        env = {
            Settings.env_name("broker_url"): self.broker_url,
            Settings.env_name("redis_url"): self.redis.url,
        }
        if self.tls_front is not None and self.broker_tls is not None:
            env[Settings.env_name("kafka_security_protocol")] = "SSL"
            env[Settings.env_name("kafka_ssl_ca_file")] = str(self.broker_tls.ca)
            if self.broker_client_cert:
                env[Settings.env_name("kafka_ssl_cert_file")] = str(self.broker_tls.client_cert)
                env[Settings.env_name("kafka_ssl_key_file")] = str(self.broker_tls.client_key)
        if self.api is not None:
            env[Settings.env_name("api_url")] = self.api.url
        if self.world is not None:
            env[f"{ENV_PREFIX}SERVICES__WORLD__URL"] = self.world.url
        if self.notifications is not None:
            env[f"{ENV_PREFIX}SERVICES__NOTIFICATIONS__URL"] = self.notifications.url
        return env

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class WorkerProcess:
    """A ``cronbus worker`` in a child process, with its web port, ready when it owns partitions."""

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, roles: Sequence[str] = ()
    ) -> None:
        self.web_port = int(env.get(Settings.env_name("web_port")) or free_port())
        full_env = {**os.environ, **env, Settings.env_name("web_port"): str(self.web_port)}
        argv = [sys.executable, "-m", "cronbus.agents.cli", "worker"]
        for role in roles:
            argv += ["--role", role]
        self.process = ManagedProcess(name, argv, log_path=log_dir / f"{name}.log", env=full_env)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout_s: float = 60.0) -> WorkerProcess:
        self.process.start()
        self.process.wait_until(self.is_ready, timeout_s, "ready")
        return self

    def metrics_text(self) -> str:
        return httpx.get(f"{self.base_url}/metrics", timeout=30.0).text

    def stop(self) -> int | None:
        return self.process.stop(grace_s=20.0)

    def kill(self) -> None:
        self.process.kill()
