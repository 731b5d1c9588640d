"""The REST API's security on a real worker (api role), broker and Redis: tokens made, listed and
revoked with `cronbus tokens` and kept in Redis only as digests (one kept in clear by an earlier
cronbus moved at start); scopes (tenant, read-only, system); a per-token rate limit (429 with
Retry-After); the body limit (413, Content-Length and chunked); security headers on every
answer, errors and pages included."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import httpx
import redis.asyncio as aioredis

from cronbus.clients.redis.rate_limits import RequestWindows
from tests.integration.cli import cronbus_json, run_cronbus

SCHEDULE = {"id": "nightly", "name": "nightly export", "job_type": "export",
            "cron": "0 3 * * *", "payload": {"export_id": "e1"}}
LIMIT, WINDOW_S, MAX_BODY = 30, 60, 4096


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add_token(env: dict[str, str], *argv: str) -> str:
    done = run_cronbus(env, "tokens", "add", *argv)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("cbt_") and len(token) > 40 and "\n" not in token
    assert "shown this once" in done.stderr and token not in done.stderr
    return token


def secured(answer: httpx.Response, *, api: bool = True) -> None:
    """The security headers every answer carries."""
    h = answer.headers
    where = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
    assert h.get("x-content-type-options") == "nosniff", where
    assert h.get("x-frame-options") == "DENY", where
    assert h.get("referrer-policy") == "no-referrer", where
    assert "frame-ancestors 'none'" in h.get("content-security-policy", ""), where
    if api:
        assert h.get("content-security-policy", "").startswith("default-src 'none'"), where
        assert h.get("cache-control") == "no-store", where


async def test_tokens_scopes_limits_and_headers_on_a_worker(
        cronbus_env, settings, start_worker):
    redis = aioredis.Redis.from_url(settings.redis_url)
    key = f"{settings.redis_namespace}:api-tokens"
    try:
        # a token an earlier cronbus kept in clear: moved to its digest when the api starts
        await redis.hset(key, "legacy-token-of-globex", "globex")
        acme = add_token(cronbus_env, "--tenant", "acme", "--name", "acme-ci")
        reader = add_token(cronbus_env, "--tenant", "acme", "--scope", "read-only",
                           "--name", "acme-dashboard")
        system = add_token(cronbus_env, "--scope", "system", "--name", "ops")
        burst = add_token(cronbus_env, "--tenant", "initech")
        wrong = run_cronbus(cronbus_env, "tokens", "add", "--scope", "system", "--tenant", "acme")
        assert wrong.returncode == 2 and "system tenant" in wrong.stderr and not wrong.stdout

        worker = start_worker(roles=("api",), web_api_tokens="settings-token-of-umbrella:umbrella",
                              web_api_rate_limit=str(LIMIT), web_api_rate_window_s=str(WINDOW_S),
                              web_max_body_bytes=str(MAX_BODY))
        kept = {(f.decode(), v.decode()) for f, v in (await redis.hgetall(key)).items()}
        # only digests and records: no token, in clear, anywhere in the hash
        for token in (acme, reader, system, burst, "legacy-token-of-globex"):
            assert not any(token in field or token in value for field, value in kept)
            assert hashlib.sha256(token.encode()).hexdigest() in {f for f, _ in kept}
        listed = cronbus_json(cronbus_env, "tokens", "list")
        assert sorted((t["tenant_id"], t["scope"], t["name"]) for t in listed) == [
            ("acme", "read-only", "acme-dashboard"), ("acme", "tenant", "acme-ci"),
            ("globex", "tenant", "kept in clear before"), ("initech", "tenant", ""),
            ("system", "system", "ops")]
        table = run_cronbus(cronbus_env, "tokens", "list")
        assert table.returncode == 0 and "acme-ci" in table.stdout
        for token in (acme, reader, system, burst, "legacy-token-of-globex"):
            assert token not in table.stdout
        assert [t["name"] for t in cronbus_json(
            cronbus_env, "tokens", "list", "--prefix", acme[:12])] == ["acme-ci"]

        async with httpx.AsyncClient(base_url=worker.base_url, timeout=30) as http:
            # no token, an unknown one: 401, on the API and on an api worker's status pages
            for path in ("/schedules", "/jobs", "/jobs/some-job", "/queues",
                         "/queues/export"):
                answer = await http.get(path)
                assert answer.status_code == 401, path
                secured(answer)
            assert (await http.get("/schedules", headers=bearer("cbt_guess"))).status_code == 401

            # tenant scope: reads and writes its own tenant
            made = await http.post("/schedules", json=SCHEDULE, headers=bearer(acme))
            assert made.status_code == 201, made.text
            secured(made)
            # read-only: reads the same tenant, writes nothing (403 naming the scope)
            seen = await http.get("/schedules", headers=bearer(reader))
            assert [s["id"] for s in seen.json()["schedules"]] == ["nightly"]
            for method, path in (("POST", "/schedules"), ("DELETE", "/schedules/nightly"),
                                 ("POST", "/schedules/nightly/pause"),
                                 ("POST", "/dead-letters/replay")):
                refused = await http.request(method, path, headers=bearer(reader),
                                             json=SCHEDULE if method == "POST" else None)
                assert refused.status_code == 403, (method, path, refused.text)
                assert "read-only" in refused.json()["error"]
                secured(refused)
            assert (await http.get("/webhook-secret", headers=bearer(reader))).status_code == 403
            after = await http.get("/schedules/nightly", headers=bearer(acme))
            assert after.json()["paused"] is False  # the refused pause changed nothing
            # other tenants, by a settings token and a token moved from clear, see none of it
            for other in ("settings-token-of-umbrella", "legacy-token-of-globex"):
                answer = await http.get("/schedules", headers=bearer(other))
                assert answer.status_code == 200 and answer.json()["schedules"] == []
            # one put in clear while the worker runs (HSET, as before): moved on its first use
            await redis.hset(key, "late-clear-token-of-hooli", "hooli")
            late = await http.get("/schedules", headers=bearer("late-clear-token-of-hooli"))
            assert late.status_code == 200 and late.json()["schedules"] == []
            assert not await redis.hexists(key, "late-clear-token-of-hooli")
            assert await redis.hexists(key, hashlib.sha256(b"late-clear-token-of-hooli").hexdigest())
            # a digest is no token: sent as one, it lets nothing in
            digest = hashlib.sha256(acme.encode()).hexdigest()
            assert (await http.get("/schedules", headers=bearer(digest))).status_code == 401
            # the system scope sees every tenant; one queue's page is the system tenant's
            assert (await http.get("/queues/export", headers=bearer(acme))).status_code == 403
            queue = await http.get("/queues/export", headers=bearer(system))
            assert queue.status_code == 200 and queue.json()["job_type"] == "export"
            jobs = await http.get("/jobs", params={"tenant": "acme"}, headers=bearer(system))
            assert jobs.status_code == 200

            # revoked: refused on the next request
            revoked = run_cronbus(cronbus_env, "tokens", "revoke", reader[:12])
            assert revoked.returncode == 0 and "acme" in revoked.stdout and reader not in revoked.stdout
            assert (await http.get("/schedules", headers=bearer(reader))).status_code == 401
            gone = run_cronbus(cronbus_env, "tokens", "revoke", reader[:12])
            assert gone.returncode == 1 and "no token starts with" in gone.stderr

            # the body limit: by Content-Length, and while reading a chunked body; nothing made
            big = {**SCHEDULE, "id": "big", "payload": {"export_id": "x" * MAX_BODY}}
            too_big = await http.post("/schedules", json=big, headers=bearer(acme))
            assert too_big.status_code == 413 and "CRONBUS_WEB_MAX_BODY_BYTES" in too_big.text
            assert str(MAX_BODY) in too_big.json()["error"]
            secured(too_big)

            async def chunks():
                raw = json.dumps(big).encode()
                for start in range(0, len(raw), 1000):
                    yield raw[start:start + 1000]

            chunked = await http.post("/schedules", content=chunks(),
                                      headers={**bearer(acme), "Content-Type": "application/json"})
            assert "content-length" not in chunked.request.headers
            assert chunked.status_code == 413 and "CRONBUS_WEB_MAX_BODY_BYTES" in chunked.text
            assert (await http.get("/schedules/big", headers=bearer(acme))).status_code == 404
            small = await http.post("/schedules", content=chunks.__name__.encode(),
                                    headers=bearer(acme))
            assert small.status_code == 422  # read and judged: not JSON, named

            # security headers on pages and errors too
            for path in ("/metrics", "/health", "/live", "/no-such-page"):
                secured(await http.get(path))
            page = await http.get("/ui")
            secured(page, api=False)
            assert "'unsafe-eval'" in page.headers["content-security-policy"]
            assert "script-src 'self'" in page.headers["content-security-policy"]
            script = await http.get("/ui/static/console.js")
            assert script.status_code == 200
            secured(script, api=False)

            # the rate limit: LIMIT requests of one token in the window, then 429 + Retry-After
            answers = await asyncio.gather(*(http.get("/schedules", headers=bearer(burst))
                                             for _ in range(LIMIT + 10)))
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200] * LIMIT + [429] * 10, statuses
            limited = next(a for a in answers if a.status_code == 429)
            assert 1 <= int(limited.headers["retry-after"]) <= WINDOW_S
            assert "CRONBUS_WEB_API_RATE_LIMIT" in limited.json()["error"]
            secured(limited)
            # another token is not slowed by it
            assert (await http.get("/schedules", headers=bearer(acme))).status_code == 200
    finally:
        await redis.aclose()


async def test_a_request_window_lets_limit_through_then_says_how_long_to_wait(settings):
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        windows = RequestWindows(redis, namespace=f"{settings.redis_namespace}:api-rate")
        assert [await windows.claim("k", 3, 1.0) for _ in range(3)] == [0, 0, 0]
        wait_s = await windows.claim("k", 3, 1.0)
        assert 0 < wait_s <= 1.0
        assert await windows.claim("other", 3, 1.0) == 0  # each key its own window
        time.sleep(wait_s + 0.05)
        assert await windows.claim("k", 3, 1.0) == 0
    finally:
        await redis.aclose()
