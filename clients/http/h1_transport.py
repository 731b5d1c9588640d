"""A small HTTP/1.1 keep-alive transport for httpx: httpx's API, a fraction of the cost per call.

Downstream calls are short requests to one API over a few dozen kept-alive connections. httpx's
own pool spends about 3 ms of CPU per call at 50 in flight, and aiohttp's session (under
:class:`cronbus.clients.http.aiohttp_transport.AiohttpTransport`) still spends most of a call's CPU in its
request machinery. This transport writes httpx's request bytes straight onto a pooled
connection and parses the answer with ``httptools`` (llhttp, C): chunked bodies, keep-alive
and ``Connection: close`` are handled; content encodings are left to httpx, as with any
transport. Errors are httpx's own (``ConnectError``, ``ReadError``, ``ReadTimeout``...).

TLS: an https:// origin is checked against ``ssl_context`` (a CA bundle, a client certificate:
the service's ``SSL_*`` settings), else the system's CAs. Proxies: the standard variables
(:mod:`cronbus.clients.http.proxies`) unless ``trust_env`` is off; an http:// origin is asked
for through the proxy in absolute form, an https:// one through a ``CONNECT`` tunnel with TLS to
the origin inside it (the proxy sees only the host and port). A proxy itself is spoken to in
plain HTTP (an https:// proxy URL is refused, named).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque

import httptools
import httpx

from cronbus.clients.http.proxies import Proxy, environment_proxies, proxy_for


def wire_bytes(request: httpx.Request, body: bytes, proxy: Proxy | None = None) -> bytes:
    """``request`` as written on the connection: its head (in absolute form to a plain HTTP
    proxy, with the proxy's credentials) and ``body``."""
    url = request.url
    plain_proxy = proxy is not None and url.scheme == "http"
    head = [request.method.encode(), b" ", str(url).encode() if plain_proxy else url.raw_path,
            b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        head += (name, b": ", value, b"\r\n")
    if plain_proxy and proxy is not None and proxy.authorization is not None:
        head += (b"Proxy-Authorization: ", proxy.authorization, b"\r\n")
    head.append(b"\r\n")
    return b"".join(head) + body


class _Connection(asyncio.Protocol):
    """One kept-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes, bool]] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"bad answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(httpx.ReadError(f"connection closed by the server: {exc or 'EOF'}"))

    # --- httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = []
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._parser.get_status_code(), self._headers, b"".join(self._body),
                               self._parser.should_keep_alive()))

    # ---
    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, data: bytes) -> asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes, bool]]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def time_out(self) -> None:
        self._fail(TimeoutError("no answer in time"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class H1Transport(httpx.AsyncBaseTransport):
    """Kept-alive HTTP/1.1 connections per origin, at most ``max_connections`` in all."""

    def __init__(self, *, max_connections: int = 100, ssl_context: ssl.SSLContext | None = None,
                 trust_env: bool = True) -> None:
        self._max_connections = max_connections
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._in_use = 0  # connection slots taken (at most ``max_connections``)
        self._queued: deque[asyncio.Future[None]] = deque()
        self._ssl = ssl_context
        self._proxies = environment_proxies() if trust_env else {}

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # the system's CAs
        return self._ssl

    async def _connect(self, url: httpx.URL, timeout: float | None, proxy: Proxy | None,
                       request: httpx.Request | None) -> _Connection:
        loop = asyncio.get_running_loop()
        secure = url.scheme == "https"
        port = url.port or (443 if secure else 80)
        tls = self._tls() if secure else None
        try:
            if proxy is None:
                connecting = loop.create_connection(_Connection, url.host, port, ssl=tls,
                                                    server_hostname=url.host if secure else None)
            elif not secure:  # the request goes to the proxy, in absolute form
                connecting = loop.create_connection(_Connection, proxy.host, proxy.port)
            else:
                connecting = self._tunnel(proxy, url.host, port, tls)
            _, conn = await asyncio.wait_for(connecting, timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection to {url.host} in time", request=request) from exc
        except OSError as exc:  # ssl.SSLError too: an untrusted certificate, a refused client
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return conn

    async def _tunnel(self, proxy: Proxy, host: str, port: int,
                      tls: ssl.SSLContext | None) -> tuple[asyncio.BaseTransport, _Connection]:
        """A ``CONNECT host:port`` tunnel through ``proxy``, and TLS to the origin inside it."""
        if proxy.url.scheme != "http":
            raise OSError(f"{proxy.variable}={proxy.shown}: the h1 transport speaks to proxies "
                          f"in plain HTTP only (http://...)")
        loop = asyncio.get_running_loop()
        [(family, kind, proto, _, address), *_] = await loop.getaddrinfo(
            proxy.host, proxy.port, type=socket.SOCK_STREAM)
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
            target = f"{host}:{port}".encode()
            head = [b"CONNECT ", target, b" HTTP/1.1\r\nHost: ", target, b"\r\n"]
            if proxy.authorization is not None:
                head += [b"Proxy-Authorization: ", proxy.authorization, b"\r\n"]
            await loop.sock_sendall(sock, b"".join(head) + b"\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:  # the origin says nothing before our TLS hello
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk or len(answer) > 65536:
                    raise OSError(f"{proxy.variable}={proxy.shown} closed the CONNECT tunnel")
                answer += chunk
            status = answer.split(b"\r\n", 1)[0].decode("latin-1")
            if status.split(" ")[1:2] != ["200"]:
                raise OSError(f"{proxy.variable}={proxy.shown} refused CONNECT {host}:{port}: "
                              f"{status}")
            return await loop.create_connection(_Connection, sock=sock, ssl=tls,
                                                server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def direct(self, url: httpx.URL) -> bool:
        """No proxy applies to ``url``: a request to it may be written by :meth:`exchange`."""
        return not self._proxies or proxy_for(url, self._proxies) is None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        url = request.url
        proxy = proxy_for(url, self._proxies) if self._proxies else None
        # a request built with ``stream=ByteStream(...)`` is not read yet: reading it is free
        body = request.read() if isinstance(request.stream, httpx.ByteStream) else await request.aread()
        status, headers, content = await self.exchange(
            url, wire_bytes(request, body, proxy), connect_timeout=timeouts.get("connect"),
            read_timeout=timeouts.get("read"), proxy=proxy, request=request)
        # ``stream=``, as transports hand answers over, read here at once: the body is whole
        # already, and httpx's synchronous read (decoding any Content-Encoding) costs a fifth of
        # the caller's ``aread()`` through async generators, which then finds it read
        response = httpx.Response(status, headers=headers, stream=httpx.ByteStream(content),
                                  request=request, extensions={"http_version": b"HTTP/1.1"})
        response.read()
        return response

    async def exchange(self, url: httpx.URL, data: bytes, *, connect_timeout: float | None,
                       read_timeout: float | None, proxy: Proxy | None = None,
                       request: httpx.Request | None = None,
                       ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Write ``data``, a whole HTTP/1.1 request to ``url``'s origin, on a kept-alive
        connection; the answer's status, headers and body (as sent: no content decoding).
        Errors are httpx's, as :meth:`handle_async_request` raises them."""
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        # a connection slot: a counter while there is room (an asyncio.Semaphore's checks cost
        # a call more than the counting); callers queue only when every connection is busy
        if self._in_use < self._max_connections and not self._queued:
            self._in_use += 1
        else:
            await self._queue_for_connection()
        try:
            idle = self._idle.get(origin)
            if idle is None:
                idle = self._idle[origin] = deque()
            for fresh in (False, True):
                conn = None
                while idle and not fresh:
                    candidate = idle.pop()
                    if not candidate.closed:
                        conn = candidate
                        break
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(url, connect_timeout, proxy, request)
                answer = conn.send(data)
                # a timer on the answer, cheaper per call than asyncio.wait_for's task
                timer = (asyncio.get_running_loop().call_later(read_timeout, conn.time_out)
                         if read_timeout else None)
                try:
                    status, headers, content, keep_alive = await answer
                    break
                except TimeoutError as exc:
                    conn.close()
                    raise httpx.ReadTimeout("no answer in time", request=request) from exc
                except httpx.TransportError as exc:
                    conn.close()
                    if reused and isinstance(exc, httpx.ReadError):
                        continue  # the server closed a kept-alive connection: once more, fresh
                    if url.scheme == "https" and isinstance(exc, httpx.ReadError):
                        # a server refusing our certificate (or none) after the handshake
                        raise httpx.ReadError(f"the server closed the TLS connection before "
                                              f"answering ({exc})", request=request) from exc
                    if request is not None:
                        exc.request = request
                    raise
                finally:
                    if timer is not None:
                        timer.cancel()
            if keep_alive and not conn.closed:
                idle.append(conn)
            else:
                conn.close()
        finally:
            self._release_connection()
        return status, headers, content

    async def _queue_for_connection(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append(waiter)
        try:
            await waiter  # granted: the slot was handed over, counted
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_connection()  # granted as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._queued.remove(waiter)
            raise

    def _release_connection(self) -> None:
        while self._queued:
            waiter = self._queued.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it, still counted
                return
        self._in_use -= 1

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                with contextlib.suppress(Exception):
                    idle.pop().close()
