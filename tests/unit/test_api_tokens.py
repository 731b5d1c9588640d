"""API tokens' pure rules: what is kept of a token, what is shown, scopes, and the security
headers every web answer gets."""

from __future__ import annotations

import hashlib

import pytest

from cronbus.agents.worker.web_guard import SECURITY_HEADERS, added_headers, too_large
from cronbus.clients.redis.api_tokens import (
    Grant,
    TokenRecord,
    new_token,
    scope_of,
    shown_prefix,
    token_digest,
)


def test_a_new_token_is_random_prefixed_and_kept_only_as_its_digest():
    one, two = new_token(), new_token()
    assert one != two and one.startswith("cbt_") and len(one) >= 4 + 43
    assert token_digest(one) == hashlib.sha256(one.encode()).hexdigest()
    record = TokenRecord(prefix=shown_prefix(one), tenant_id="acme", scope="tenant", name="ci",
                         created_at=1.0)
    assert one not in record.encode() and one.startswith(record.prefix)
    assert TokenRecord.decode(record.encode()) == record


@pytest.mark.parametrize("token, shown", [
    ("cbt_abcdefghijklmnopqrstuvwxyz", "cbt_abcdefgh"), ("tok-acme", "tok-"), ("ab", "a"),
])
def test_no_more_than_half_a_token_is_ever_shown(token, shown):
    assert shown_prefix(token) == shown


def test_a_value_kept_in_clear_by_an_earlier_cronbus_is_no_record():
    assert TokenRecord.decode(b"acme") is None
    assert TokenRecord.decode(b'{"prefix": "x", "tenant_id": "a", "scope": "admin"}') is None


def test_read_only_may_only_read():
    reader = Grant("acme", "read-only", "d")
    assert reader.may("GET") and reader.may("head")
    assert not any(reader.may(m) for m in ("POST", "PUT", "DELETE", "PATCH"))
    assert Grant("acme", "tenant", "d").may("DELETE") and Grant("system", "system", "d").may("POST")


def test_scopes_and_tenants_of_a_new_token():
    assert scope_of("tenant", "acme", "system") == ("tenant", "acme")
    assert scope_of("read-only", "acme", "system") == ("read-only", "acme")
    assert scope_of("system", None, "ops") == ("system", "ops")
    for scope, tenant, named in (("system", "acme", "system tenant"),
                                 ("tenant", None, "--tenant"), ("admin", "acme", "admin"),
                                 ("tenant", "bad tenant", "bad tenant")):
        with pytest.raises(ValueError, match=named):
            scope_of(scope, tenant, "system")


def test_security_headers_are_added_where_an_answer_lacks_them():
    assert added_headers({}) == SECURITY_HEADERS
    page = {"content-security-policy": "default-src 'self'", "Cache-Control": "no-cache"}
    added = added_headers(page)
    assert "Content-Security-Policy" not in added and "Cache-Control" not in added
    assert added["X-Frame-Options"] == "DENY" and added["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert "1024 bytes" in too_large(1024)["error"]
