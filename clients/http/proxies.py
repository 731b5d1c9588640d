"""The standard proxy variables, as curl, httpx, aiohttp and Python's urllib read them:
``HTTPS_PROXY`` for https:// URLs, ``HTTP_PROXY`` for http://, ``ALL_PROXY`` for either (the
lower-case spelling wins over the upper-case one), and ``NO_PROXY``: hosts (and their
subdomains), ``host:port``, or ``*`` for none, reached directly.

Read once when a transport is made (a worker's environment does not change while it runs).
Which proxy applies and which hosts bypass it is urllib's own rule
(:func:`urllib.request.proxy_bypass_environment`), so cronbus agrees with the tools beside it.
"""

from __future__ import annotations

import base64
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import httpx


def environment_proxies(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"http": ..., "https": ..., "all": ..., "no": ...}`` from the environment, as
    :func:`urllib.request.getproxies_environment` reads it (lower case first)."""
    environ = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for name, value in environ.items():  # upper case first, so lower case overwrites it
        if name.isupper() and name.lower().endswith("_proxy") and value:
            found[name.lower()[:-6]] = value
    for name, value in environ.items():
        if name.islower() and name.endswith("_proxy") and value:
            found[name[:-6]] = value
    return found


@dataclass(frozen=True)
class Proxy:
    """A forward proxy: where it listens and the ``Proxy-Authorization`` its URL's user gives."""

    url: httpx.URL
    variable: str  # the variable it came from, for error messages (its password never shown)

    @property
    def host(self) -> str:
        return self.url.host

    @property
    def port(self) -> int:
        return self.url.port or (443 if self.url.scheme == "https" else 80)

    @property
    def authorization(self) -> bytes | None:
        if not self.url.username:
            return None
        pair = f"{unquote(self.url.username)}:{unquote(self.url.password or '')}"
        return b"Basic " + base64.b64encode(pair.encode())

    @property
    def shown(self) -> str:
        """The proxy's address without its credentials."""
        return f"{self.url.scheme}://{self.host}:{self.port}"


def proxy_for(url: httpx.URL, proxies: Mapping[str, str]) -> Proxy | None:
    """The proxy a request to ``url`` goes through, or None for a direct connection."""
    chosen = proxies.get(url.scheme)
    variable = f"{url.scheme.upper()}_PROXY"
    if not chosen:
        chosen, variable = proxies.get("all"), "ALL_PROXY"
    if not chosen:
        return None
    address = url.host if url.port is None else f"{url.host}:{url.port}"
    if "no" in proxies and urllib.request.proxy_bypass_environment(address, dict(proxies)):
        return None
    if "://" not in chosen:  # "proxy:3128", as curl allows
        chosen = f"http://{chosen}"
    return Proxy(httpx.URL(chosen), variable)
