"""Before a worker starts: the broker and Redis answer, or the worker does not start (one line
naming the setting, exit 4, instead of Faust's traceback); a downstream service, or the
bridge's own Redis, that does not answer yet is said once, and the worker starts anyway (its
jobs wait behind its breaker; the bridge is unready until its Redis answers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx

from cronbus.clients.http.proxies import environment_proxies, proxy_for
from cronbus.clients.network import reach
from cronbus.streams.catalog import CatalogError, load_catalog
from cronbus.streams.settings import DEFAULT_SERVICE, Settings

log = logging.getLogger(__name__)


def service_setting(name: str) -> str:
    """The variable a service's URL is read from."""
    if name == DEFAULT_SERVICE:
        return Settings.env_name("api_url")
    return f"{Settings.env_name('services')}__{name.upper()}__URL"


async def outside_world_answers(settings: Settings, roles: Sequence[str]) -> None:
    """Raises :class:`reach.Unreachable` for the broker or Redis; warns for a silent service."""
    await reach.broker(settings.kafka)
    await reach.redis(settings.redis_url, options=settings.redis_options())
    if "bridge" in roles and settings.bridge_redis_url:
        try:  # the bridge's own Redis: only the bridge waits for it (unready until it answers)
            await reach.redis(settings.bridge_redis_url, setting="bridge_redis_url",
                              options=settings.redis_options(settings.bridge_redis_url))
        except reach.Unreachable as exc:
            log.warning("%s; the bridge waits for it, the other roles start", exc)
    if "processor" not in roles:
        return
    try:
        wanted = load_catalog(settings).pick(settings.job_types)
    except CatalogError:
        return  # named when the worker is built
    services = sorted({t.service for t in wanted})
    proxies = environment_proxies()
    checks = []
    for name in services:
        url = settings.service(name).url
        proxy = proxy_for(httpx.URL(url), proxies)  # through a proxy: is the proxy there?
        checks.append(reach.tcp(proxy.variable, proxy.shown, default_port=80) if proxy
                      else reach.tcp(service_setting(name), url, default_port=80))
    for outcome in await asyncio.gather(*checks, return_exceptions=True):
        if isinstance(outcome, reach.Unreachable):
            log.warning("%s; its jobs wait behind its breaker until it answers", outcome)
        elif isinstance(outcome, BaseException):
            raise outcome


def check_outside_world(settings: Settings, roles: Sequence[str]) -> None:
    """:func:`outside_world_answers` on a loop of its own, closed after (the worker's loop is
    Faust's to make)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(outside_world_answers(settings, roles))
    finally:
        loop.close()
