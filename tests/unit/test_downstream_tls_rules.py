"""The downstream services' TLS settings and proxy rules: files checked at start and named, the
standard proxy variables read as urllib reads them, and a failed handshake's setting named."""

from __future__ import annotations

import httpx
import pytest

from cronbus.clients.http.downstream import tls_hint
from cronbus.clients.http.proxies import environment_proxies, proxy_for
from cronbus.streams.settings import SettingsError, load_settings


def test_lower_case_proxy_variables_win_and_empty_ones_are_none():
    proxies = environment_proxies({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2",
                                   "HTTP_PROXY": "", "NO_PROXY": "internal", "PATH": "/bin"})
    assert proxies == {"https": "http://lower:2", "no": "internal"}


@pytest.mark.parametrize("url, proxy", [
    ("https://api.example.com/graphql", "http://tls-proxy:3128"),
    ("http://api.example.com/graphql", "http://plain-proxy:80"),
    ("https://billing.internal/graphql", None),  # NO_PROXY: a domain and its subdomains
    ("https://internal:8443/x", None),
    ("http://127.0.0.1:8000/graphql", None),
])
def test_which_proxy_a_url_goes_through(url, proxy):
    proxies = {"https": "http://user:p%40ss@tls-proxy:3128", "http": "plain-proxy",
               "no": "internal,127.0.0.1"}
    found = proxy_for(httpx.URL(url), proxies)
    assert (found.shown if found else None) == proxy
    if found is not None and found.url.username:
        assert found.authorization == b"Basic dXNlcjpwQHNz"  # user:p@ss
        assert "p%40ss" not in found.shown and found.variable == "HTTPS_PROXY"


def test_no_proxy_star_and_all_proxy():
    assert proxy_for(httpx.URL("https://a/"), {"all": "http://p:1", "no": "*"}) is None
    assert proxy_for(httpx.URL("https://a/"), {"all": "http://p:1"}).variable == "ALL_PROXY"  # type: ignore[union-attr]
    assert proxy_for(httpx.URL("https://a/"), {}) is None


@pytest.mark.parametrize("error, named", [
    ("ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
     "certificate in certificate chain", "CRONBUS_API_SSL_CA_FILE"),
    ("SSLError: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required",
     "CRONBUS_API_SSL_CERT_FILE"),
    ("certificate verify failed: IP address mismatch", "does not name the host"),
])
def test_a_failed_handshake_names_what_to_set(error, named):
    assert named in tls_hint(error, "CRONBUS_API_SSL_")


def test_a_closed_connection_names_the_client_certificate_only_over_tls():
    assert tls_hint("ReadError: EOF", "CRONBUS_API_SSL_") == ""
    assert "CRONBUS_SERVICES__WORLD__SSL_CERT_FILE" in tls_hint(
        "ReadError: EOF", "CRONBUS_SERVICES__WORLD__SSL_", closed_over_tls=True)


def test_service_tls_files_are_checked_at_start_and_named(monkeypatch, tmp_path):
    monkeypatch.setenv("CRONBUS_API_URL", "https://api.example.com/graphql")
    monkeypatch.setenv("CRONBUS_API_SSL_CA_FILE", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__URL", "https://world.example.com/graphql")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("no certificate here")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__SSL_CA_FILE", str(not_pem))
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__SSL_KEY_FILE", str(not_pem))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "CRONBUS_API_SSL_CA_FILE=" in message and "no readable file" in message
    assert "CRONBUS_SERVICES__WORLD__SSL_KEY_FILE is set without" in message
    monkeypatch.delenv("CRONBUS_API_SSL_CA_FILE")
    monkeypatch.delenv("CRONBUS_SERVICES__WORLD__SSL_KEY_FILE")
    with pytest.raises(SettingsError, match="CRONBUS_SERVICES__WORLD__SSL_CA_FILE cannot be loaded"):
        load_settings()
    monkeypatch.delenv("CRONBUS_SERVICES__WORLD__SSL_CA_FILE")
    settings = load_settings()
    assert settings.service("api").tls.ca_file is None and settings.service("world").tls.context()
