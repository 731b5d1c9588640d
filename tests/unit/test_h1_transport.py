"""The HTTP/1.1 transport under httpx, against small local servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from cronbus.clients.http.h1_transport import H1Transport

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
