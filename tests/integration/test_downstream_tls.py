"""The downstream client over TLS and through a proxy, with each transport (h1, aiohttp, httpx),
against the development API behind a TLS front whose certificates the test makes: a trusted CA
(the service's SSL_CA_FILE) lets calls through and the API records them once; an untrusted one,
or no client certificate where one is required, fails naming the setting to set, and nothing is
applied. The standard proxy variables: a forward proxy the test runs sees each call (a CONNECT
tunnel for https://, an absolute-form request for http://), and NO_PROXY bypasses it. A worker
with CRONBUS_API_SSL_CA_FILE runs a job over TLS, and its /health probes the API the same way."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cronbus.clients.devstack.harness import DevStack
from cronbus.clients.devstack.tls import CertificateFiles, TlsFront, make_ca, make_certificates
from cronbus.clients.http.aiohttp_transport import AiohttpTransport
from cronbus.clients.http.downstream import DownstreamClient, DownstreamUnavailable, make_breaker
from cronbus.clients.http.h1_transport import H1Transport
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.families.generic import RUN_JOB
from cronbus.streams import topics
from cronbus.streams.metrics import Metrics
from cronbus.streams.security import TlsFiles
from tests.integration.kafka import eventually
from tests.integration.test_dlq_replay import export_job

TRANSPORTS = ("h1", "aiohttp", "httpx")
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy",
                   "http_proxy", "all_proxy", "no_proxy")


def downstream(url: str, transport: str, tls: TlsFiles) -> DownstreamClient:
    metrics = Metrics()
    context = tls.context()
    kinds = {"h1": lambda: H1Transport(ssl_context=context),
             "aiohttp": lambda: AiohttpTransport(ssl_context=context), "httpx": lambda: None}
    return DownstreamClient(url, metrics=metrics, timeout_s=10, ssl_context=context,
                            transport=kinds[transport](), breaker=make_breaker(
                                "api", fail_max=100, reset_timeout_s=30, metrics=metrics))


async def run_job(client: DownstreamClient, key: str) -> None:
    await client.graphql(RUN_JOB, {"input": {"tenantId": "acme", "jobId": key, "type": "export",
                                             "payload": {}}}, idempotency_key=key)


def applied(api, key: str) -> int:
    return api.applied().get(key, 0)


class ForwardProxy:
    """A forward proxy on its own thread: CONNECT tunnels and absolute-form HTTP requests, each
    request line kept in ``seen``."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode()
            self.seen.append(line)
            method, target, _ = line.split(" ")
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # http://host:port/path: to the origin in origin form
                url = httpx.URL(target)
                up_reader, up_writer = await asyncio.open_connection(url.host, url.port or 80)
                rest = head.split(b"\r\n", 1)[1]
                up_writer.write(f"{method} {url.raw_path.decode()} HTTP/1.1\r\n".encode() + rest)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


@pytest.fixture
def certificates(tmp_path: Path) -> CertificateFiles:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def fronts(stack: DevStack, certificates: CertificateFiles, tmp_path: Path
           ) -> Iterator[tuple[str, str]]:
    """The development API over TLS, and over TLS wanting a client certificate: their URLs."""
    assert stack.api is not None
    upstream = httpx.URL(stack.api.url)
    plain = TlsFront(upstream.port or 80, certificates, tmp_path / "front").start()
    mutual = TlsFront(upstream.port or 80, certificates, tmp_path / "mutual",
                      require_client_cert=True).start()
    try:
        yield (str(upstream.copy_with(scheme="https", port=plain.port)),
               str(upstream.copy_with(scheme="https", port=mutual.port)))
    finally:
        plain.stop()
        mutual.stop()


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_ca_bundle_and_a_client_certificate_are_honoured_and_failures_named(
        transport, api, fronts, certificates, tmp_path, no_proxy_variables):
    tls_url, mutual_url = fronts
    other_ca, _ = make_ca(tmp_path / "other", "another CA")
    run = uuid.uuid4().hex[:8]

    trusted = downstream(tls_url, transport, TlsFiles(ca_file=str(certificates.ca)))
    try:
        await run_job(trusted, f"{run}-trusted")
    finally:
        await trusted.aclose()
    assert applied(api, f"{run}-trusted") == 1

    for name, tls in (("system CAs", TlsFiles()), ("another CA", TlsFiles(ca_file=str(other_ca)))):
        untrusted = downstream(tls_url, transport, tls)
        try:
            with pytest.raises(DownstreamUnavailable) as refused:
                await run_job(untrusted, f"{run}-untrusted")
        finally:
            await untrusted.aclose()
        assert "CRONBUS_API_SSL_CA_FILE" in str(refused.value), (name, str(refused.value))
    assert applied(api, f"{run}-untrusted") == 0

    with_cert = downstream(mutual_url, transport, TlsFiles(
        ca_file=str(certificates.ca), cert_file=str(certificates.client_cert),
        key_file=str(certificates.client_key)))
    without = downstream(mutual_url, transport, TlsFiles(ca_file=str(certificates.ca)))
    try:
        await run_job(with_cert, f"{run}-mutual")
        with pytest.raises(DownstreamUnavailable) as refused:
            await run_job(without, f"{run}-no-cert")
    finally:
        await with_cert.aclose()
        await without.aclose()
    assert "CRONBUS_API_SSL_CERT_FILE" in str(refused.value), str(refused.value)
    assert applied(api, f"{run}-mutual") == 1 and applied(api, f"{run}-no-cert") == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_standard_proxy_variables_are_honoured(
        transport, stack, api, fronts, certificates, no_proxy_variables):
    tls_url, _ = fronts
    assert stack.api is not None
    plain_url = stack.api.url
    ca = TlsFiles(ca_file=str(certificates.ca))
    run = uuid.uuid4().hex[:8]
    with ForwardProxy() as proxy:
        no_proxy_variables.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        no_proxy_variables.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        clients = [downstream(tls_url, transport, ca), downstream(plain_url, transport, ca)]
        try:
            await run_job(clients[0], f"{run}-tunnelled")
            await run_job(clients[1], f"{run}-forwarded")
        finally:
            for client in clients:
                await client.aclose()
        tls_port, plain_port = httpx.URL(tls_url).port, httpx.URL(plain_url).port
        assert f"CONNECT 127.0.0.1:{tls_port} HTTP/1.1" in proxy.seen, proxy.seen
        assert any(line.startswith(f"POST http://127.0.0.1:{plain_port}/") for line in proxy.seen)
        assert applied(api, f"{run}-tunnelled") == 1 and applied(api, f"{run}-forwarded") == 1

        no_proxy_variables.setenv("NO_PROXY", "localhost,127.0.0.1")
        before = len(proxy.seen)
        direct = downstream(tls_url, transport, ca)
        try:
            await run_job(direct, f"{run}-direct")
        finally:
            await direct.aclose()
        assert len(proxy.seen) == before and applied(api, f"{run}-direct") == 1


async def test_a_worker_runs_a_job_over_tls_with_its_ca_and_probes_the_api_the_same_way(
        stack, api, settings, fronts, certificates, start_worker, no_proxy_variables):
    tls_url, _ = fronts
    worker = start_worker(roles=("processor",), api_url=tls_url,
                          api_ssl_ca_file=str(certificates.ca))
    job = export_job("acme")
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher.publish_raw(topics.job_topic("export"), job.encode(), key=b"acme")
        await publisher.flush()
    await eventually(lambda: applied(api, job.job_id), lambda n: n == 1, timeout_s=60,
                     what="the job applied over TLS")
    health = httpx.get(f"{worker.base_url}/health", timeout=10).json()
    assert health["components"]["downstream:api"]["status"] == "up", health
