"""The downstream API: GraphQL over httpx, behind a circuit breaker.

Every error a call can end in is one of this tree, so a processor decides by type::

    DownstreamError
    ├── RetryableError          may succeed later: retry with backoff
    │   ├── DownstreamTimeout       no answer within the timeout
    │   ├── DownstreamUnavailable   connection refused or reset, or a 5xx
    │   └── RateLimited             429; ``retry_after`` says when (seconds)
    ├── PermanentError          will fail the same way again: dead-letter at once
    └── CircuitOpen             the breaker is open; nothing was sent

Only retryable errors count against the breaker: a 400 says the job is bad, not the API.

The breaker opens on either of two rules, whichever comes first:

- ``fail_max`` consecutive retryable failures: pybreaker's own counter (shared in Redis);
- an error rate: of the calls of the last ``window_s`` seconds, at least ``min_calls`` made
  and at least ``error_rate`` of them failed retryably (:class:`~cronbus.clients.http.error_rate.ErrorRate`),
  which catches an API failing every other call, where no failure run reaches ``fail_max``.

The rate is fed to pybreaker by a listener (:class:`_ErrorRateTrip`). pybreaker calls a
listener's ``success`` hook after its own success handling and its ``failure`` hook after
counting the failure but *before* its state decides (its closed state opens at ``fail_max``,
its half-open state opens on any failure). The listener records outcomes only while the
circuit is closed and, when the rule says trip, calls ``cb.open()``, unless the failure
counter has reached ``fail_max``, in which case pybreaker opens it itself right after: the
circuit opens once, with one ``state_change`` and one alert. In half-open it leaves the
decision to pybreaker (the probe's failure re-opens it). The call that tripped the rate
raises its own retryable error, not :class:`CircuitOpen`; every later call is refused. Any
change of state empties the window, so a circuit that closes again starts counting afresh.

The window is per worker process (each sees its own calls); the breaker's state is shared
through Redis, so one worker's trip opens the circuit for every worker.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pybreaker

from cronbus.clients.http.error_rate import ErrorRate
from cronbus.clients.http.h1_transport import H1Transport, wire_bytes
from cronbus.streams.metrics import BREAKER_STATES, Metrics

log = logging.getLogger(__name__)

# GraphQL error codes (extensions.code) that mean "try again", as Apollo and Strawberry spell them
RETRYABLE_GRAPHQL_CODES = frozenset(
    {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "UNAVAILABLE", "TIMEOUT", "RATE_LIMITED"}
)


# JSON as httpx encodes a ``json=`` body; one encoder made once (``json.dumps`` with options
# builds a new one per call)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class DownstreamError(Exception):
    """A call to the downstream API did not succeed."""

    def __init__(self, message: str, *, service: str, status: int | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.status = status


class RetryableError(DownstreamError):
    """The call may succeed if made again later."""

    retry_after: float | None = None


class DownstreamTimeout(RetryableError):
    """No answer within the timeout."""


class DownstreamUnavailable(RetryableError):
    """The API could not be reached, or answered with a server error (5xx)."""


class RateLimited(RetryableError):
    """The API answered 429; ``retry_after`` is how long it asked us to wait, if it said."""

    def __init__(self, message: str, *, service: str, retry_after: float | None) -> None:
        super().__init__(message, service=service, status=429)
        self.retry_after = retry_after


class PermanentError(DownstreamError):
    """The API rejected the call itself (4xx, or a GraphQL error it marks as final)."""


class CircuitOpen(DownstreamError):
    """The breaker for this service is open: the call was not made."""


def tls_hint(error: str, setting_prefix: str, *, closed_over_tls: bool = False) -> str:
    """What to set when a connection failed its TLS handshake (``""`` for any other failure):
    ``setting_prefix`` is the service's, e.g. ``CRONBUS_API_SSL_``. ``closed_over_tls``: an
    https:// server closed the connection before answering, which is how a server that wants a
    client certificate refuses one (TLS 1.3 checks it after the client's handshake is done)."""
    text = error.lower()
    if "certificate verify failed" in text:
        if "mismatch" in text:
            return " (its certificate does not name the host in its URL)"
        return (f" (its certificate is not trusted: {setting_prefix}CA_FILE names the CA to "
                f"trust)")
    if any(sign in text for sign in ("certificate required", "bad certificate", "unknown ca",
                                     "closed the tls connection before answering")):
        return (f" (it asks for a client certificate it trusts: {setting_prefix}CERT_FILE and "
                f"{setting_prefix}KEY_FILE)")
    if "handshake failure" in text or "wrong version number" in text:
        return " (no TLS handshake: is it https://, and does it take this certificate?)"
    if closed_over_tls:
        return (f" (closed without an answer: if it asks for a client certificate, "
                f"{setting_prefix}CERT_FILE and {setting_prefix}KEY_FILE give one)")
    return ""


def status_class(status: int | None) -> str:
    return "error" if status is None else f"{status // 100}xx"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class _Answer:
    """An answer the h1 transport read, as the classification reads an ``httpx.Response``:
    the status, the body, ``json()``; its headers and text (read only for errors and non-JSON
    answers) through an ``httpx.Response`` made when asked, so they decode as httpx's do."""

    __slots__ = ("_raw", "_response", "content", "status_code")

    def __init__(self, status: int, raw: list[tuple[bytes, bytes]], content: bytes) -> None:
        self.status_code = status
        self._raw = raw
        self.content = content
        self._response: httpx.Response | None = None

    def _full(self) -> httpx.Response:
        if self._response is None:
            self._response = httpx.Response(self.status_code, headers=self._raw,
                                            content=self.content)
        return self._response

    @property
    def headers(self) -> httpx.Headers:
        return self._full().headers

    @property
    def text(self) -> str:
        return self._full().text

    def json(self) -> Any:
        return json.loads(self.content)  # as httpx's ``Response.json()``


def _read_answer(status: int, raw: list[tuple[bytes, bytes]], content: bytes
                 ) -> _Answer | httpx.Response:
    """The answer as the classification reads it; one with a Content-Encoding decoded by httpx."""
    for name, _ in raw:
        if name.lower() == b"content-encoding":
            response = httpx.Response(status, headers=raw, stream=httpx.ByteStream(content))
            response.read()
            return response
    return _Answer(status, raw, content)


class _BreakerGauge(pybreaker.CircuitBreakerListener):
    """Keeps the state gauge current and tells ``on_open`` (an alert) when the circuit opens."""

    def __init__(self, metrics: Metrics, on_open: Callable[[str], None] | None) -> None:
        self._metrics = metrics
        self._on_open = on_open

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        name = new_state.name if new_state is not None else "closed"
        self._metrics.breaker_state.labels(cb.name).set(BREAKER_STATES.get(name, 0))
        if getattr(old_state, "name", None) == name:
            return  # calls in flight failing after the trip re-open it: one alert is enough
        log.warning("circuit breaker %s: %s -> %s", cb.name, getattr(old_state, "name", None), name)
        if name == "open" and self._on_open is not None:
            self._on_open(cb.name)


class _ErrorRateTrip(pybreaker.CircuitBreakerListener):
    """Feeds each call's outcome to an :class:`ErrorRate` and opens the circuit when it says
    trip (the module docstring has the order of pybreaker's hooks this relies on)."""

    def __init__(self, rate: ErrorRate, clock: Callable[[], float]) -> None:
        self.rate = rate
        self._clock = clock

    def success(self, cb: pybreaker.CircuitBreaker) -> None:
        # a PermanentError lands here too (pybreaker's ``exclude``): the API answered
        if cb.current_state == pybreaker.STATE_CLOSED:
            self.rate.record(self._clock(), failed=False)

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        # half-open: pybreaker opens on this failure itself; open: a call in flight at the trip
        if cb.current_state != pybreaker.STATE_CLOSED:
            return
        if not isinstance(exc, RetryableError):
            return  # e.g. a call cancelled by a stopping worker: no answer from the API
        now = self._clock()
        self.rate.record(now, failed=True)
        if not self.rate.should_trip(now):
            return
        if cb.fail_counter >= cb.fail_max:
            return  # pybreaker's closed state opens it right after this hook: open it once
        calls, failures = self.rate.counts(now)
        log.warning("circuit breaker %s: %d of %d calls failed in the last %gs (rate >= %g)",
                    cb.name, failures, calls, self.rate.window_s, self.rate.rate)
        cb.open()

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        self.rate.reset()  # opened, probing or closed again: what came before is history


def make_breaker(
    service: str, *, fail_max: int, reset_timeout_s: float, metrics: Metrics,
    error_rate: float = 0.5, min_calls: int = 10, window_s: float = 30.0,
    storage: pybreaker.CircuitBreakerStorage | None = None,
    on_open: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> pybreaker.CircuitBreaker:
    """A breaker that counts only retryable failures (permanent ones are the job's fault) and
    opens at ``fail_max`` in a row or at ``error_rate`` of this worker's calls in the last
    ``window_s`` seconds (once ``min_calls`` were made there).

    ``on_open(service)`` is called each time the circuit opens (e.g. ``Alerts.breaker_opened``).
    """
    metrics.breaker_state.labels(service).set(0)
    rate = ErrorRate(rate=error_rate, min_calls=min_calls, window_s=window_s)
    return pybreaker.CircuitBreaker(
        fail_max=fail_max,
        reset_timeout=reset_timeout_s,
        exclude=[PermanentError],
        listeners=[_BreakerGauge(metrics, on_open), _ErrorRateTrip(rate, clock)],
        state_storage=storage,
        name=service,
    )


class DownstreamClient:
    """GraphQL calls to one downstream service, each carrying an ``Idempotency-Key``.

    ``transport`` is the seam for speed (pick the fastest measured transport) and tests. Given
    one, a request is an ``httpx.Request`` handed straight to it: ``AsyncClient.send`` spends
    more per call than the transport does (a cookie jar, auth and redirect flows, URL merging),
    none of which a downstream call uses. Without one, httpx's own client and pool serve.
    """

    def __init__(
        self,
        url: str,
        *,
        breaker: pybreaker.CircuitBreaker,
        metrics: Metrics,
        token: str | None = None,
        timeout_s: float = 10.0,
        service: str = "api",
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        tls_setting: str = "CRONBUS_API_SSL_",
    ) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "cronbus"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url
        self.service = service
        self.breaker = breaker
        self._metrics = metrics
        metrics.downstream_service(service)
        self._transport = transport
        # the headers httpx's client would send, as raw bytes once: a request is then built
        # with them complete (``stream=``), skipping httpx's per-request header merging
        self._raw_headers = [(name.encode(), value.encode()) for name, value in
                             {**headers, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}.items()]
        self._timeout = {"timeout": httpx.Timeout(timeout_s).as_dict()}
        self._connect_timeout = self._timeout["timeout"]["connect"]
        self._read_timeout = self._timeout["timeout"]["read"]
        # over our h1 transport a request is written as bytes, the same bytes as through httpx:
        # per (method, url) the head up to the Idempotency-Key's value, made once (None: a
        # proxy applies, the request goes through httpx's objects)
        self._h1 = transport if isinstance(transport, H1Transport) else None
        self._heads: dict[tuple[str, str], tuple[httpx.URL, bytes, bytes] | None] = {}
        self._endpoint = httpx.URL(url)  # parsed once: every GraphQL call goes there
        self._latency = {c: metrics.downstream_seconds.labels(service, c)  # labels() once
                         for c in ("error", "1xx", "2xx", "3xx", "4xx", "5xx")}
        self._tls_setting = tls_setting  # named when a TLS handshake fails
        # without a transport of ours, httpx's own pool: its TLS from ``verify``, its proxies
        # from the standard variables (trust_env)
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            verify=ssl_context if ssl_context is not None else True,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def graphql(
        self, query: str, variables: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Run one GraphQL operation; return its ``data`` or raise a :class:`DownstreamError`."""
        data: dict[str, Any] = await self._guarded(
            "POST", self.url, {"query": query, "variables": variables}, idempotency_key,
            self._data_of,
        )
        return data

    async def rest(
        self, method: str, path: str, body: Any = None, *, idempotency_key: str
    ) -> Any:
        """One REST request to ``path`` (relative to the service URL, or absolute); return the
        decoded JSON answer (None when empty) or raise a :class:`DownstreamError`."""
        url = str(httpx.URL(self.url).join(path))
        return await self._guarded(method, url, body, idempotency_key, self._rest_answer)

    async def _guarded(
        self, method: str, url: str, body: Any, idempotency_key: str,
        answer: Callable[[Any], Any],
    ) -> Any:
        # pybreaker's call() would return our coroutine unawaited: count around the await
        breaker = self.breaker
        state = breaker.state
        try:
            if state.name != pybreaker.STATE_CLOSED:
                with breaker.calling():
                    response = await self._send(method, url, body, idempotency_key)
                    return answer(response)
            # a closed circuit (nearly every call): what ``calling()`` does, the same pybreaker
            # hooks in the same order, without its two generators and context manager
            state.before_call(self._send)
            for listener in breaker.listeners:
                listener.before_call(breaker, self._send)
            try:
                result = answer(await self._send(method, url, body, idempotency_key))
            except BaseException as exc:  # as pybreaker's: a cancelled call counts too
                state._handle_error(exc, reraise=False)  # may trip: CircuitBreakerError
                raise
            state._handle_success()
            return result
        except pybreaker.CircuitBreakerError as exc:
            raise CircuitOpen(
                f"circuit for {self.service} is open: {exc}", service=self.service
            ) from exc

    async def _send(
        self, method: str, url: str, body: Any, idempotency_key: str
    ) -> _Answer | httpx.Response:
        started = time.perf_counter()
        status: int | None = None
        try:
            response = await self._exchange(method, url, body, idempotency_key)
            status = response.status_code
        except httpx.TimeoutException as exc:
            raise DownstreamTimeout(
                f"{self.service} did not answer in time ({type(exc).__name__})", service=self.service
            ) from exc
        except httpx.TransportError as exc:
            raise DownstreamUnavailable(
                f"{self.service} unreachable: {type(exc).__name__}: {exc}"
                f"{self._tls_hint(exc, url)}", service=self.service
            ) from exc
        finally:
            kind = status_class(status)
            latency = self._latency.get(kind) or self._metrics.downstream_seconds.labels(
                self.service, kind)
            latency.observe(time.perf_counter() - started)
        return response

    async def _exchange(self, method: str, url: str, body: Any,
                        idempotency_key: str) -> _Answer | httpx.Response:
        if self._h1 is not None:
            head = self._heads.get((method, url), False)
            if head is False:
                head = self._head(method, url)
            if head is not None:
                target, without, with_body = head
                key = idempotency_key.encode()
                if body is None:
                    data = b"".join((without, key, b"\r\n\r\n"))
                else:
                    content = _JSON.encode(body).encode()
                    data = b"".join((with_body, key, b"\r\nContent-Length: %d\r\n\r\n"
                                     % len(content), content))
                return _read_answer(*await self._h1.exchange(
                    target, data, connect_timeout=self._connect_timeout,
                    read_timeout=self._read_timeout))
        if self._transport is not None:
            request = self._request(method, url, body, idempotency_key)
            response = await self._transport.handle_async_request(request)
            await response.aread()
            return response
        return await self._http.request(method, url, json=body,
                                        headers={"Idempotency-Key": idempotency_key})

    async def probe(self, body: Any) -> int:
        """POST ``body`` to the service past the breaker and the metrics (``/health``'s look),
        over the same TLS and proxy as its calls; its status, or the error named as a call's."""
        try:
            return (await self._exchange("POST", self.url, body, "health-probe")).status_code
        except httpx.TransportError as exc:
            raise DownstreamUnavailable(f"{type(exc).__name__}: {exc}{self._tls_hint(exc, self.url)}",
                                        service=self.service) from exc

    def _tls_hint(self, exc: httpx.TransportError, url: str) -> str:
        # httpx's own pool says RemoteProtocolError ("disconnected without sending a response")
        closed = isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError)
        return tls_hint(_causes(exc), self._tls_setting,
                        closed_over_tls=closed and url.startswith("https://"))

    def _head(self, method: str, url: str) -> tuple[httpx.URL, bytes, bytes] | None:
        """The bytes of a request to ``url`` up to its Idempotency-Key's value, as
        :meth:`_request` builds it and the h1 transport writes it, without a body and with one;
        None when a proxy applies."""
        assert self._h1 is not None
        empty = self._request(method, url, None, "")
        head: tuple[httpx.URL, bytes, bytes] | None = None
        if self._h1.direct(empty.url):
            # without a body the key is the last header; with one, Content-Length follows it
            without = wire_bytes(empty, b"")
            with_body = wire_bytes(self._request(method, url, 0, ""), b"0")
            end_without = b"Idempotency-Key: \r\n\r\n"
            end_with = b"Idempotency-Key: \r\nContent-Length: 1\r\n\r\n0"
            assert without.endswith(end_without) and with_body.endswith(end_with)
            head = (empty.url, without[:-4], with_body[:-len(end_with) + len(b"Idempotency-Key: ")])
        if len(self._heads) >= 256:  # REST paths may name a job each: the cache stays small
            self._heads.clear()
        self._heads[(method, url)] = head
        return head

    def _request(self, method: str, url: str, body: Any, idempotency_key: str) -> httpx.Request:
        """The request ``httpx.Request(method, url, json=body, headers=...)`` would be,
        byte for byte (headers in the same order), built at half its cost: the body is encoded
        as httpx encodes JSON and the headers are given complete, so httpx merges none."""
        target = self._endpoint if url == self.url else httpx.URL(url)
        method = method.upper()
        key = (b"Idempotency-Key", idempotency_key.encode())
        if body is None:
            content = b""
            # httpx adds a zero length, next to Host, only where a body is expected
            empty = [(b"Content-Length", b"0")] if method in ("POST", "PUT", "PATCH") else []
            headers = [(b"Host", target.netloc), *empty, *self._raw_headers, key]
        else:
            content = _JSON.encode(body).encode()
            headers = [(b"Host", target.netloc), *self._raw_headers, key,
                       (b"Content-Length", b"%d" % len(content))]
        return httpx.Request(method, target, headers=headers, stream=httpx.ByteStream(content),
                             extensions=self._timeout)

    def _rest_answer(self, response: httpx.Response) -> Any:
        """The decoded answer, or the error its status means (inside the breaker, so it counts)."""
        status = response.status_code
        if status == 429:
            raise RateLimited(
                f"{self.service} rate-limited the call", service=self.service,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise DownstreamUnavailable(
                f"{self.service} answered {status}: {response.text[:200]}",
                service=self.service, status=status,
            )
        if status >= 400:
            raise PermanentError(
                f"{self.service} answered {status}: {response.text[:200]}",
                service=self.service, status=status,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def _data_of(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status == 429:
            raise RateLimited(
                f"{self.service} rate-limited the call",
                service=self.service,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise DownstreamUnavailable(
                f"{self.service} answered {status}: {response.text[:200]}",
                service=self.service, status=status,
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if status >= 400 or not isinstance(body, dict):
            raise PermanentError(
                f"{self.service} answered {status}: {response.text[:200]}",
                service=self.service, status=status,
            )
        errors = body.get("errors")
        if errors:
            codes = {str((e.get("extensions") or {}).get("code", "")) for e in errors}
            message = "; ".join(str(e.get("message", e)) for e in errors)[:500]
            if codes & RETRYABLE_GRAPHQL_CODES:
                raise DownstreamUnavailable(
                    f"{self.service} GraphQL error: {message}", service=self.service, status=status
                )
            raise PermanentError(
                f"{self.service} GraphQL error: {message}", service=self.service, status=status
            )
        return body.get("data") or {}

    async def aclose(self) -> None:
        await self._http.aclose()  # closes the transport too


def _causes(exc: BaseException) -> str:
    """An error's text with its causes' (httpx wraps the ssl module's errors)."""
    texts, seen = [], 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        texts.append(f"{type(current).__name__}: {current}")
        current, seen = current.__cause__ or current.__context__, seen + 1
    return " | ".join(texts)
