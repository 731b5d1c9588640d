"""The HTTP/1.1 transport under httpx, against small local servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable

import httpx
import pytest

from cronbus.clients.http.downstream import (
    DownstreamClient,
    PermanentError,
    RateLimited,
    make_breaker,
)
from cronbus.clients.http.h1_transport import H1Transport, wire_bytes
from cronbus.streams.metrics import Metrics

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/graphql"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length")), 0)
    return head + await reader.readexactly(length)


async def test_requests_and_chunked_answers_on_one_kept_alive_connection():
    seen: list[bytes] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n"
                         b"5\r\n{\"ok\"\r\n6\r\n: true\r\n1\r\n}\r\n0\r\n\r\n")
            await writer.drain()

    server, url = await serve(handler)
    async with server, httpx.AsyncClient(transport=H1Transport()) as client:
        for n in range(3):
            answer = await client.post(url, json={"n": n}, headers={"Idempotency-Key": f"k{n}"})
            assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert connections == 1
    assert b"POST /graphql HTTP/1.1" in seen[0] and b"idempotency-key: k0" in seen[0].lower()
    assert seen[2].endswith(b'{"n":2}')


async def test_no_answer_in_time_is_a_read_timeout_and_a_refused_port_a_connect_error():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server, url = await serve(silent)
    async with server, httpx.AsyncClient(transport=H1Transport(), timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, json={})
    async with httpx.AsyncClient(transport=H1Transport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post("http://127.0.0.1:9/graphql", json={})


async def test_a_connection_the_server_closed_while_idle_is_replaced():
    async def one_answer_then_close(reader: asyncio.StreamReader,
                                    writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()  # as a server whose keep-alive timeout ran out

    server, url = await serve(one_answer_then_close)
    async with server, httpx.AsyncClient(transport=H1Transport()) as client:
        assert (await client.post(url, json={})).status_code == 200
        assert (await client.post(url, json={})).status_code == 200


@pytest.mark.parametrize("method, path, body", [
    ("POST", None, {"query": "mutation { x }", "variables": {"name": "Zoë", "n": [1, 2.5]}}),
    ("POST", "/exports/1", None),
    ("GET", "/exports/1", None),
    ("PUT", "/x?y=1", {"a": 1}),
])
async def test_the_downstream_client_writes_what_httpx_s_own_client_would_send(method, path, body):
    """Over this transport the downstream client writes a request's bytes itself (no
    ``httpx.Request``): the same bytes as ``httpx.Request(method, url, json=body, headers=...)``
    written by the transport."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n"
                         b'{"data":{"ok":true}}')
            await writer.drain()

    server, url = await serve(handler)
    metrics = Metrics()
    client = DownstreamClient(url, breaker=make_breaker("api", fail_max=3, reset_timeout_s=30,
                                                        metrics=metrics),
                              metrics=metrics, token="s3cret", transport=H1Transport())
    async with server:
        if path is None:
            assert await client.graphql(body["query"], body["variables"],
                                        idempotency_key="job-1") == {"ok": True}
        else:
            assert await client.rest(method, path, body, idempotency_key="job-1") == {
                "data": {"ok": True}}
        await client.aclose()
    expected = httpx.Request(method, httpx.URL(url).join(path or ""), json=body, headers={
        "Content-Type": "application/json", "User-Agent": "cronbus",
        "Authorization": "Bearer s3cret", "Accept": "*/*", "Accept-Encoding": "gzip, deflate",
        "Idempotency-Key": "job-1"})
    assert seen == [wire_bytes(expected, expected.read())]


async def test_the_downstream_client_reads_encoded_answers_and_retry_after_over_this_transport():
    answers = [b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
               % len(gzip.compress(b'{"data":{"n":7}}')) + gzip.compress(b'{"data":{"n":7}}'),
               b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 400 Bad\r\nContent-Type: text/plain; charset=latin-1\r\n"
               b"Content-Length: 3\r\n\r\nZ\xf6e"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()

    server, url = await serve(handler)
    metrics = Metrics()
    client = DownstreamClient(url, breaker=make_breaker("api", fail_max=3, reset_timeout_s=30,
                                                        metrics=metrics),
                              metrics=metrics, transport=H1Transport())
    async with server:
        assert await client.graphql("q", {}, idempotency_key="a") == {"n": 7}
        with pytest.raises(RateLimited) as limited:
            await client.graphql("q", {}, idempotency_key="b")
        assert limited.value.retry_after == 7
        with pytest.raises(PermanentError, match="answered 400: Zöe"):
            await client.graphql("q", {}, idempotency_key="c")
        await client.aclose()
