"""The downstream client's error classification and breaker counting, over httpx's mock transport."""

from __future__ import annotations

import httpx
import pytest

from cronbus.clients.http.downstream import (
    CircuitOpen,
    DownstreamClient,
    DownstreamTimeout,
    DownstreamUnavailable,
    PermanentError,
    RateLimited,
    make_breaker,
    parse_retry_after,
)
from cronbus.streams.metrics import Metrics


def client_answering(handler, *, fail_max: int = 3) -> tuple[DownstreamClient, Metrics]:
    metrics = Metrics()
    breaker = make_breaker("api", fail_max=fail_max, reset_timeout_s=30, metrics=metrics)
    client = DownstreamClient("http://api.test/graphql", breaker=breaker, metrics=metrics,
                              token="s3cret", transport=httpx.MockTransport(handler))
    return client, metrics


async def call(client: DownstreamClient) -> dict:
    return await client.graphql("mutation { x }", {"a": 1}, idempotency_key="job-1")


async def test_a_call_carries_the_idempotency_key_and_token_and_returns_data():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": {"x": {"ok": True}}})

    client, metrics = client_answering(handler)
    assert await call(client) == {"x": {"ok": True}}
    assert seen[0].headers["Idempotency-Key"] == "job-1"
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    assert b"2xx" in metrics.exposition()


@pytest.mark.parametrize("response, error", [
    (httpx.Response(503, text="down"), DownstreamUnavailable),
    (httpx.Response(400, json={"errors": [{"message": "bad"}]}), PermanentError),
    (httpx.Response(200, json={"errors": [{"message": "invalid id"}]}), PermanentError),
    (httpx.Response(200, json={"errors": [{"message": "later",
                                           "extensions": {"code": "SERVICE_UNAVAILABLE"}}]}),
     DownstreamUnavailable),
    (httpx.Response(200, text="<html>"), PermanentError),
])
async def test_answers_are_classified(response, error):
    client, _ = client_answering(lambda request: response)
    with pytest.raises(error):
        await call(client)


async def test_429_is_retryable_and_honours_retry_after():
    client, _ = client_answering(lambda r: httpx.Response(429, headers={"Retry-After": "7"}))
    with pytest.raises(RateLimited) as caught:
        await call(client)
    assert caught.value.retry_after == 7.0


async def test_timeouts_and_refused_connections_are_retryable():
    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    for handler, error in ((timeout, DownstreamTimeout), (refused, DownstreamUnavailable)):
        client, _ = client_answering(handler)
        with pytest.raises(error):
            await call(client)


async def test_awaited_failures_open_the_breaker_and_then_nothing_is_sent():
    sent = []

    def handler(request):
        sent.append(request)
        return httpx.Response(500)

    client, metrics = client_answering(handler, fail_max=3)
    for _ in range(2):
        with pytest.raises(DownstreamUnavailable):
            await call(client)
    with pytest.raises(CircuitOpen):  # the third failure trips it
        await call(client)
    with pytest.raises(CircuitOpen):
        await call(client)
    assert len(sent) == 3
    assert client.breaker.current_state == "open"
    assert b'cronbus_breaker_state{service="api"} 2.0' in metrics.exposition()


async def test_permanent_errors_do_not_count_against_the_breaker():
    client, _ = client_answering(lambda r: httpx.Response(422, json={"errors": []}), fail_max=2)
    for _ in range(5):
        with pytest.raises(PermanentError):
            await call(client)
    assert client.breaker.current_state == "closed"


def test_retry_after_as_an_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None


async def test_a_rest_call_joins_its_path_to_the_service_url_and_classifies_the_answer():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/bad"):
            return httpx.Response(422, json={"detail": "no"})
        return httpx.Response(201, json={"id": 7})

    client, _ = client_answering(handler)
    assert await client.rest("POST", "/exports/1", {"a": 1}, idempotency_key="job-9") == {"id": 7}
    assert str(seen[0].url) == "http://api.test/exports/1"
    assert seen[0].headers["Idempotency-Key"] == "job-9"
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    with pytest.raises(PermanentError):
        await client.rest("PUT", "/exports/bad", None, idempotency_key="job-9")


@pytest.mark.parametrize("method, path, body", [
    ("POST", None, {"query": "mutation { x }", "variables": {"name": "Zoë", "n": [1, 2.5]}}),
    ("POST", "/exports/1", None),
    ("GET", "/exports/1", None),
    ("PUT", "http://other.test:8080/x?y=1", {"a": 1}),
])
async def test_a_request_is_what_httpx_s_own_client_would_send(method, path, body):
    """The client gives httpx its requests' headers complete (cheaper than letting httpx merge
    them): the same URL, headers in the same order and the same body bytes as
    ``httpx.Request(method, url, json=body, headers=...)``."""
    built: list[httpx.Request] = []
    ours, _ = client_answering(lambda request: built.append(request) or httpx.Response(200, json={}))
    if path is None:
        await ours.graphql(body["query"], body["variables"], idempotency_key="job-1")
    else:
        await ours.rest(method, path, body, idempotency_key="job-1")
    url = httpx.URL("http://api.test/graphql").join(path or "")
    expected = httpx.Request(method, url, json=body, headers={
        "Content-Type": "application/json", "User-Agent": "cronbus",
        "Authorization": "Bearer s3cret", "Accept": "*/*", "Accept-Encoding": "gzip, deflate",
        "Idempotency-Key": "job-1"})
    (request,) = built
    assert (request.method, request.url) == (expected.method, expected.url)
    assert request.headers.raw == expected.headers.raw
    assert request.read() == expected.read()
