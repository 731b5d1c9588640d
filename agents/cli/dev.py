"""``cronbus dev up``: the development stack alone (broker, Redis where none answers, the
development APIs), with the settings a worker run by hand needs printed as ``export`` lines.

It stays in the foreground until Ctrl-C (or SIGTERM) and then stops every process it started,
by pid. The Redis keys a worker writes under its namespace are given an expiry at the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cronbus.agents.cli.demo import LEFT_KEYS_TTL_S, expire_left_keys
from cronbus.clients.devstack.harness import DevStack
from cronbus.clients.devstack.processes import free_port, port_open
from cronbus.clients.network import reach
from cronbus.clients.network.reach import masked
from cronbus.streams.settings import ENV_PREFIX, Settings, load_settings

# the tenant the printed API token acts for (`cronbus schedules` and the console)
DEV_TENANT = "dev"
# how often the foreground loop looks whether a started process died
WATCH_EVERY_S = 1.0


def _say(text: str) -> None:
    """What dev up says to the person: stderr, so stdout holds only what a shell can source."""
    print(f"cronbus dev: {text}", file=sys.stderr, flush=True)


def dev_env(stack: DevStack, *, namespace: str, data_dir: Path, web_port: int,
            token: str) -> dict[str, str]:
    """Every setting a worker and the command line need to use ``stack``."""
    return {
        **stack.env(),
        Settings.env_name("redis_namespace"): namespace,
        Settings.env_name("data_dir"): str(data_dir),
        Settings.env_name("web_port"): str(web_port),
        Settings.env_name("web_api_tokens"): f"{token}:{DEV_TENANT}",
        # the development APIs have no billing schema: the billing tenants' keeper stays off
        Settings.env_name("builtin_schedules_off"): "billing-schedules",
        # read by `cronbus schedules` (a worker with the api role answers there)
        f"{ENV_PREFIX}SCHEDULES_URL": f"http://127.0.0.1:{web_port}",
        f"{ENV_PREFIX}SCHEDULES_TOKEN": token,
    }


def export_lines(env: dict[str, str]) -> str:
    """``export NAME=value`` lines, quoted for a POSIX shell, in a stable order."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(env.items()))


def _web_port(settings: Settings) -> int:
    """The worker's web port: the configured one (6066 by default) unless something listens
    there already (another worker), else a free one."""
    if not port_open("127.0.0.1", settings.web_port):
        return settings.web_port
    port = free_port()
    _say(f"port {settings.web_port} is taken: a worker's web server gets {port}")
    return port


def _external_broker_answers(settings: Settings) -> bool:
    """A broker named by CRONBUS_BROKER_URL (used instead of starting one) must answer: an
    export left from an earlier `dev up` names one long gone."""
    try:
        asyncio.run(reach.broker(settings.kafka))
    except reach.Unreachable as exc:
        _say(f"{exc} (unset {Settings.env_name('broker_url')} to start the development broker)")
        return False
    return True


def run_dev_up(*, env_file: Path | None) -> int:
    settings = load_settings()
    if os.environ.get(Settings.env_name("broker_url")) and not _external_broker_answers(settings):
        return 4
    stack_dir = Path(tempfile.mkdtemp(prefix="cronbus-dev-"))
    stack = DevStack(stack_dir)
    run = uuid.uuid4().hex[:6]
    namespace = f"cronbus-dev-{run}"
    # Ctrl-C and SIGTERM both end it through KeyboardInterrupt, so the stop below runs once
    # (SIGINT too: a shell starts a background job with SIGINT ignored, and Python keeps that)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.getLogger("cronbus.clients.devstack").setLevel(logging.WARNING)
    wrote_env_file = False
    try:
        _say(f"starting the broker, Redis and the development APIs (logs: {stack_dir})")
        stack.start()
        env = dev_env(stack, namespace=namespace, data_dir=stack_dir / "data",
                      web_port=_web_port(settings), token=f"dev-{uuid.uuid4().hex[:12]}")
        exports = export_lines(env)
        if env_file is not None:
            env_file.write_text(exports)
            wrote_env_file = True
        sys.stdout.write(exports)
        started = {p.name: p.pid for p in stack.processes()}
        sys.stdout.write(
            f"# cronbus dev up: pids {', '.join(f'{n} {pid}' for n, pid in started.items())}; "
            f"Redis keys under {namespace}:*\n")
        sys.stdout.flush()
        redis_said = ("started here" if stack.redis.started_here
                      else "the one that answered; keys under " + namespace + ":*")
        _say(f"up. Broker {stack.broker_url}, Redis {masked(stack.redis.url)} ({redis_said}), "
             f"development API {stack.api.url if stack.api else '-'}")
        how = (f". {shlex.quote(str(env_file))}" if env_file is not None
               else "paste the export lines above")
        _say(f"in another shell: {how}, then `cronbus worker`. Ctrl-C stops everything.")
        while True:
            time.sleep(WATCH_EVERY_S)
            dead = [p for p in stack.processes() if not p.alive()]
            if dead:
                _say(", ".join(f"{p.name} (pid {p.pid}) exited; its log: {p.log_path}"
                               for p in dead))
                return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        _say("stopping")
        return 0
    except Exception as exc:  # show the cause, then clean up
        _say(f"failed: {exc}")
        return 1
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            if wrote_env_file and env_file is not None:
                env_file.unlink(missing_ok=True)
            if stack.redis.url and not stack.redis.started_here:
                with contextlib.suppress(Exception):
                    left = expire_left_keys(stack.redis.url, namespace)
                    _say(f"{left} key(s) left under {namespace}:* expire within "
                         f"{LEFT_KEYS_TTL_S // 60} minutes")
            stack.stop()
            _say("stopped every process it started")


def env_from_exports(text: str) -> dict[str, str]:
    """The variables of ``export NAME=value`` lines (as printed above), comments skipped."""
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            [assignment] = shlex.split(line.removeprefix("export "))
            name, _, value = assignment.partition("=")
            env[name] = value
    return env
