"""The ``cronbus`` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cronbus.agents.worker.logs import configure_logging
from cronbus.agents.worker.roles import DEFAULT_ROLES, ROLES
from cronbus.streams import headers, topics
from cronbus.streams.catalog import Catalog, PayloadError, UnknownJobType, load_catalog
from cronbus.streams.events import CronTick, DomainEvent
from cronbus.streams.settings import Settings, SettingsError, load_settings

log = logging.getLogger("cronbus")


# --- worker ---------------------------------------------------------------------------------

def _use_uvloop() -> None:
    """libuv's event loop: about twice the network throughput of asyncio's own (bench/jobs.py)."""
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; the worker runs on asyncio's own loop")
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from cronbus.agents.worker.preflight import check_outside_world

    roles = args.role or list(DEFAULT_ROLES)
    if args.job_types is not None:
        settings = load_settings(job_types=args.job_types)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    if settings.event_loop == "uvloop":
        _use_uvloop()
    check_outside_world(settings, roles)
    # imported once the outside world answers: a wrong setting is named without Faust's import
    import faust

    from cronbus.agents.worker.build import build_worker

    app = build_worker(settings, roles)
    # on SIGTERM each role drains in its on_stop: the processors let started jobs finish within
    # CRONBUS_SHUTDOWN_GRACE_S and hand the rest back uncommitted (Faust's own consumer carries
    # no record of cronbus's, so there is nothing of Faust's to drain)
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False)
    log.info("worker %s starting with roles %s", settings.app_id, ", ".join(roles))
    worker.execute_from_commandline()
    return 0


# --- publish --------------------------------------------------------------------------------

def _field(pair: str) -> tuple[str, Any]:
    name, sep, raw = pair.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{pair!r} is not name=value")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


class BadEvent(ValueError):
    """An event ``cronbus publish`` refuses; ``problems`` name every field that is wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def build_event(catalog: Catalog, event_type: str, tenant: str | None,
                fields: dict[str, Any]) -> DomainEvent:
    """An event of ``event_type``; event_id and occurred_at are filled in when not given. Every
    problem is named at once (:class:`BadEvent`): a field the event type has not (here it is
    a typo: ingest ignores fields it does not read, so a producer may add some), a missing or
    malformed one, and for a cron tick an undeclared job type or a payload not fitting it."""
    model = catalog.models.get(event_type)
    if model is None:
        raise ValueError(f"no event type {event_type!r}; known: "
                         f"{', '.join(sorted(catalog.models))}")
    data = {"event_id": str(uuid.uuid4()), "occurred_at": datetime.now(UTC).isoformat(), **fields}
    if tenant is not None:
        data["tenant_id"] = tenant
    problems = [f"{name}: {event_type} events have no such field (they have "
                f"{', '.join(model.model_fields)})" for name in fields
                if name not in model.model_fields]
    try:
        event = model.model_validate(data)
    except ValidationError as exc:
        raise BadEvent([*problems, *_problems(exc)]) from None
    if isinstance(event, CronTick):
        try:
            catalog[event.job_type].check_payload(event.payload)
        except PayloadError as exc:
            problems += [f"payload.{name}: {problem}" for name, problem in exc.problems]
        except UnknownJobType as exc:
            problems.append(f"job_type: {exc}")
    if problems:
        raise BadEvent(problems)
    return event


# bad lines shown at most (the count of the rest follows)
BAD_LINES_SHOWN = 50


def _events_from_lines(catalog: Catalog, event_type: str, tenant: str | None,
                       lines: Iterator[str]) -> list[DomainEvent]:
    """Every event of the JSON lines, or a ValueError naming every bad line (not just the
    first), each with all its problems."""
    events, bad = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"line {number}: not JSON ({exc})")
            continue
        if not isinstance(fields, dict):
            bad.append(f"line {number}: a JSON object is expected")
            continue
        try:
            events.append(build_event(catalog, event_type, tenant, fields))
        except ValueError as exc:
            bad.append(f"line {number}: {exc}")
    if bad:
        shown = bad[:BAD_LINES_SHOWN]
        if len(bad) > len(shown):
            shown.append(f"... and {len(bad) - len(shown)} more bad line(s)")
        raise ValueError(f"{len(bad)} bad line(s), nothing published:\n" + "\n".join(shown))
    return events


def _problems(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in exc.errors()]



def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from cronbus.clients.kafka.publisher import EventPublisher
    from cronbus.clients.network import reach

    catalog = load_catalog(settings)
    try:
        if args.file:
            stream = sys.stdin if args.file == "-" else open(args.file)  # noqa: SIM115
            events = _events_from_lines(catalog, args.event_type, args.tenant, stream)
        else:
            fields = dict(args.set or [])
            events = [build_event(catalog, args.event_type, args.tenant, fields)
                      for _ in range(args.count)]
    except BadEvent as exc:
        print(f"cronbus publish: invalid {args.event_type} event: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"cronbus publish: {exc}", file=sys.stderr)
        return 2

    from cronbus.agents.cli.progress import ProgressBar

    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = ProgressBar(len(events), "publish") if show else None

    async def send() -> None:
        await reach.broker(settings.kafka)
        async with EventPublisher(settings.kafka) as publisher:
            for done, event in enumerate(events, 1):
                await publisher.publish(event)
                if bar:
                    bar.update(done)
            await publisher.flush()
        if bar:
            bar.close()

    asyncio.run(send())
    print(f"published {len(events)} {args.event_type} event(s)")
    return 0


# --- jobs -----------------------------------------------------------------------------------

def _job_types(settings: Settings, names: Sequence[str] | None) -> list[str]:
    """The named job types (every declared one when none is), each checked against the
    catalog: an unknown one stops the command, named with the known ones."""
    catalog = load_catalog(settings)
    try:
        return [t.name for t in catalog.pick(names or [])]
    except UnknownJobType as exc:
        raise SettingsError(str(exc)) from None

def cmd_clock_get(args: argparse.Namespace, settings: Settings) -> int:
    import redis.asyncio as aioredis

    from cronbus.clients.redis.world_clocks import WorldClockView

    async def read() -> dict[str, Any] | None:
        client = aioredis.Redis.from_url(settings.redis_url, **settings.redis_options())
        try:
            return await WorldClockView(client, namespace=settings.redis_namespace).get(args.tenant)
        finally:
            await client.aclose()

    clock = asyncio.run(read())
    if clock is None:
        print(f"no world clock for tenant {args.tenant!r}: none of its world-time-advanced "
              f"events has been read", file=sys.stderr)
        return 1
    print(json.dumps(clock, indent=2))
    return 0


def cmd_job_status(args: argparse.Namespace, settings: Settings) -> int:
    import redis.asyncio as aioredis

    from cronbus.clients.redis.job_status import JobStatusStore
    from cronbus.streams.jobs import status_answer

    async def read() -> dict[str, Any] | None:
        client = aioredis.Redis.from_url(settings.redis_url, **settings.redis_options())
        try:
            store = JobStatusStore(client, namespace=settings.redis_namespace,
                                   ttl_s=settings.job_status_ttl_s)
            return await store.get(args.job_id)
        finally:
            await client.aclose()

    record = asyncio.run(read())
    if record is None:
        print(f"no status for job {args.job_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(status_answer(record), indent=2))
    return 0


def cmd_job_queues(args: argparse.Namespace, settings: Settings) -> int:
    import redis.asyncio as aioredis

    from cronbus.agents.processing.queues import queue_stats
    from cronbus.clients.redis.job_status import JobStatusStore

    chosen = _job_types(settings, args.job_type)

    async def read() -> list[dict[str, Any]]:
        client = aioredis.Redis.from_url(settings.redis_url, **settings.redis_options())
        try:
            store = JobStatusStore(client, namespace=settings.redis_namespace,
                                   ttl_s=settings.job_status_ttl_s)
            return await queue_stats(settings.kafka, settings.app_id, store, chosen)
        finally:
            await client.aclose()

    queues = asyncio.run(read())
    if args.json:
        print(json.dumps(queues, indent=2))
        return 0
    columns = ("job_type", "waiting", "active", "completed", "failed", "dead_lettered")
    widths = [max(len(c), *(len(str(q[c])) for q in queues)) for c in columns]
    print("  ".join(c.replace("_", " ").ljust(w) for c, w in zip(columns, widths, strict=True)))
    for q in queues:
        print("  ".join(str(q[c]).ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    return 0


def cmd_job_retry_failed(args: argparse.Namespace, settings: Settings) -> int:
    from cronbus.agents.processing.queues import retry_failed

    [job_type] = _job_types(settings, [args.job_type])
    result = asyncio.run(retry_failed(settings.kafka, job_type,
                                      tenant_id=args.tenant, dry_run=args.dry_run))
    if args.json:
        print(json.dumps({"job_type": args.job_type, "dry_run": args.dry_run, **result.as_dict()},
                         indent=2))
    else:
        verb = "would replay" if args.dry_run else "replayed"
        count = result.matched - len(result.refused) if args.dry_run else result.sent
        print(f"{verb} {count} failed {args.job_type} job(s) from "
              f"{topics.dead_letter_topic(topics.job_topic(args.job_type))}")
    for reason in result.refused:
        print(f"cronbus jobs retry-failed: not replayed: {reason}", file=sys.stderr)
    return 1 if result.refused else 0


# --- tokens ---------------------------------------------------------------------------------

def _token_book(settings: Settings) -> tuple[Any, Any]:
    import redis.asyncio as aioredis

    from cronbus.clients.redis.api_tokens import TokenBook

    client = aioredis.Redis.from_url(settings.redis_url, **settings.redis_options())
    return client, TokenBook(client, namespace=settings.redis_namespace,
                             system_tenant=settings.system_tenant)


def cmd_tokens_add(args: argparse.Namespace, settings: Settings) -> int:
    from cronbus.clients.redis.api_tokens import scope_of

    try:
        scope, tenant = scope_of(args.scope, args.tenant, settings.system_tenant)
    except ValueError as exc:
        print(f"cronbus tokens add: {exc}", file=sys.stderr)
        return 2

    async def add() -> tuple[str, Any]:
        client, book = _token_book(settings)
        try:
            return await book.add(tenant_id=tenant, scope=scope, name=args.name or "")
        finally:
            await client.aclose()

    token, record = asyncio.run(add())
    print(token)  # the only time it is shown: Redis keeps its SHA-256 digest
    print(f"cronbus: a {record.scope} token for tenant {record.tenant_id} (prefix "
          f"{record.prefix}); it is shown this once, keep it now", file=sys.stderr)
    return 0


def cmd_tokens_list(args: argparse.Namespace, settings: Settings) -> int:
    async def listed() -> list[Any]:
        client, book = _token_book(settings)
        try:
            return await book.listed(args.prefix or "")
        finally:
            await client.aclose()

    records = asyncio.run(listed())
    rows = [{"prefix": r.prefix, "name": r.name, "tenant_id": r.tenant_id, "scope": r.scope,
             "created_at": datetime.fromtimestamp(r.created_at, UTC).isoformat(timespec="seconds")}
            for r in records]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = ("prefix", "name", "tenant_id", "scope", "created_at")
    widths = [max([len(c), *(len(str(r[c])) for r in rows)]) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    return 0


def cmd_tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def revoke() -> list[Any]:
        client, book = _token_book(settings)
        try:
            return list(await book.revoke(args.prefix))
        finally:
            await client.aclose()

    try:
        revoked = asyncio.run(revoke())
    except ValueError as exc:
        print(f"cronbus tokens revoke: {exc}", file=sys.stderr)
        return 2
    if not revoked:
        print(f"cronbus tokens revoke: no token starts with {args.prefix!r} "
              f"(`cronbus tokens list` shows them; tokens in CRONBUS_WEB_API_TOKENS are "
              f"revoked by removing them there)", file=sys.stderr)
        return 1
    [record] = revoked
    print(f"revoked {record.prefix} ({record.scope} token of tenant {record.tenant_id})")
    return 0


def _tokens_parser(sub: Any) -> None:
    tokens = sub.add_parser("tokens", help="the REST API's bearer tokens: add, list, revoke "
                            "(kept in Redis as their SHA-256 digests)")
    actions = tokens.add_subparsers(dest="tokens_command", required=True)
    add = actions.add_parser("add", help="make a token and print it, this once")
    add.add_argument("--tenant", help="the tenant it acts for (not with --scope system)")
    add.add_argument("--scope", default="tenant", choices=("tenant", "read-only", "system"),
                     help="tenant: its tenant's data; read-only: that, GET only; system: every "
                          "tenant's (default: tenant)")
    add.add_argument("--name", help="what it is for, e.g. billing-dashboard")
    add.set_defaults(run=cmd_tokens_add)
    listed = actions.add_parser("list", help="the tokens: prefix, name, tenant, scope, created "
                                "(never a token)")
    listed.add_argument("--prefix", help="only those whose prefix starts with this")
    listed.add_argument("--json", action="store_true", help="JSON output")
    listed.set_defaults(run=cmd_tokens_list)
    revoke = actions.add_parser("revoke", help="revoke a token by its prefix (or the token)")
    revoke.add_argument("prefix", metavar="PREFIX", help="its prefix as listed, e.g. cbt_AbC12xYz")
    revoke.set_defaults(run=cmd_tokens_revoke)


# --- schedules ------------------------------------------------------------------------------

# exit codes of `cronbus schedules ...`
EXIT_NOT_FOUND, EXIT_INVALID, EXIT_UNAUTHORIZED, EXIT_UNREACHABLE = 1, 2, 3, 4


def _definition(args: argparse.Namespace) -> dict[str, Any]:
    """A schedule definition from --file (JSON; '-' for stdin) and --set FIELD=VALUE pairs."""
    data: dict[str, Any] = {}
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{args.file}: not JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.file}: a JSON object is expected")
        data.update(loaded)
    data.update(dict(args.set or []))
    return data


def _schedules_request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """The method, path and options of the API call a `cronbus schedules` command makes."""
    from urllib.parse import quote

    schedule_id = getattr(args, "schedule_id", None)
    path = "/schedules" if schedule_id is None else f"/schedules/{quote(schedule_id, safe='')}"
    action = args.schedules_command
    if action == "defer-effect":
        # the source's queueDeferredEffect: the effect's one-off schedule, at a wall or world time
        return "PUT", f"/effects/{quote(args.effect_id, safe='')}", {"json": {
            "execute_at": args.at, "clock": "world" if args.world else "wall"}}
    if action == "list":
        return "GET", path, {}
    if action == "get":
        return "GET", path, {}
    if action == "create":
        return "POST", path, {"json": _definition(args)}
    if action == "update":
        return "PUT", path, {"json": _definition(args)}
    if action == "delete":
        return "DELETE", path, {}
    if action == "trigger":
        headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
        return "POST", f"{path}/trigger", {"headers": headers}
    if action == "backfill":
        # sent as given: the API checks both times and names each bad one (exit 2)
        return "POST", f"{path}/backfill", {"json": {"from": args.start, "to": args.end}}
    if action in ("pause", "resume"):
        return "POST", f"{path}/{action}", {}
    if action == "next":
        params: dict[str, Any] = {"count": args.count}
        if args.after:
            params["after"] = args.after  # checked by the API, which names it when bad
        return "GET", f"{path}/next", {"params": params}
    if action == "runs":
        return "GET", f"{path}/runs", {"params": {"limit": args.limit}}
    raise ValueError(f"unknown command {action!r}")


def _schedules_error(status: int, body: Any) -> tuple[int, str]:
    """The exit code and message of an API answer that is not a success."""
    error = body.get("error", "") if isinstance(body, dict) else str(body)
    if status == 422 and isinstance(body, dict):
        lines = [f"  {p['field']}: {p['message']}" for p in body.get("problems", [])]
        return EXIT_INVALID, "\n".join(["invalid request:", *lines])
    if status == 401:
        return EXIT_UNAUTHORIZED, (f"{error} (give --token or set CRONBUS_SCHEDULES_TOKEN)")
    if status == 403:  # the token's scope does not allow it (a read-only token writing)
        return EXIT_UNAUTHORIZED, error
    if status == 413:
        return EXIT_INVALID, error
    if status == 404:
        return EXIT_NOT_FOUND, error or "not found"
    return EXIT_UNREACHABLE, f"HTTP {status}: {error}"


def _backfill_summary(body: dict[str, Any]) -> str:
    """A backfill's answer for people: one line of counts, then each fire time, in the
    schedule's zone, with its run id and whether it was sent now or already before."""
    lines = [f"backfill of {body['schedule_id']} from {body['from']} to {body['to']}: "
             f"{body['count']} fire time(s), {body['sent']} sent, {body['already']} already "
             f"(at most {body['max_runs']} a request)"]
    lines += [f"  {run['at']}  {run['run_id']}  {'already' if run['already'] else 'sent'}"
              for run in body["runs"]]
    return "\n".join(lines)


def cmd_schedules(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    from cronbus.agents.schedules.api_rules import VIEW_ONLY
    from cronbus.clients.http.schedules_client import SchedulesClient

    url = args.url or f"http://127.0.0.1:{settings.web_port}"
    try:
        method, path, options = _schedules_request(args)
        if args.schedules_command == "update" and not args.replace:
            # --set and --file change the stored definition; the rest stays as it is
            with SchedulesClient(url, args.token) as client:
                current = client.call("GET", path)
            if current.status != 200:
                code, message = _schedules_error(current.status, current.body)
                print(f"cronbus schedules: {message}", file=sys.stderr)
                return code
            kept = {k: v for k, v in current.body.items()
                    if k not in ("tenant_id", "revision_at", "created_at", *VIEW_ONLY)}
            options["json"] = {**kept, **options["json"]}
    except (ValueError, OSError) as exc:
        print(f"cronbus schedules: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        with SchedulesClient(url, args.token) as client:
            reply = client.call(method, path, **options)
    except httpx.HTTPError as exc:
        print(f"cronbus schedules: cannot reach {url} ({exc.__class__.__name__}: {exc})",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    if reply.status >= 400:
        code, message = _schedules_error(reply.status, reply.body)
        print(f"cronbus schedules: {message}", file=sys.stderr)
        return code
    if args.schedules_command == "backfill" and not args.json and isinstance(reply.body, dict):
        print(_backfill_summary(reply.body))
    elif reply.body is not None:
        print(json.dumps(reply.body, indent=2))
    elif args.schedules_command == "delete":
        print(f"deleted schedule {args.schedule_id}")
    return 0


def _schedules_parser(sub: Any) -> None:
    import os

    schedules = sub.add_parser("schedules", help="manage schedules through a worker's API")
    schedules.add_argument("--url", default=os.environ.get("CRONBUS_SCHEDULES_URL"),
                           help="the worker's web address (env CRONBUS_SCHEDULES_URL; "
                                "default http://127.0.0.1:$CRONBUS_WEB_PORT)")
    schedules.add_argument("--token", default=os.environ.get("CRONBUS_SCHEDULES_TOKEN"),
                           help="your bearer token (env CRONBUS_SCHEDULES_TOKEN)")
    schedules.set_defaults(run=cmd_schedules)
    actions = schedules.add_subparsers(dest="schedules_command", required=True)
    actions.add_parser("list", help="your tenant's schedules")
    for name, text in (("get", "one schedule"), ("delete", "remove a schedule"),
                       ("pause", "stop firing until resumed"),
                       ("resume", "fire again, from now on")):
        actions.add_parser(name, help=text).add_argument("schedule_id", help=SCHEDULE_ID)
    for name, text in (("create", "create a schedule (the same definition twice is one)"),
                       ("update", "change a schedule: --set and --file over its definition")):
        action = actions.add_parser(name, help=text)
        if name == "update":
            action.add_argument("schedule_id", help=SCHEDULE_ID)
            action.add_argument("--replace", action="store_true",
                                help="send the definition as it is, not merged over the stored one")
        action.add_argument("--file", help="the definition as JSON ('-' for stdin)")
        action.add_argument("--set", type=_field, action="append", metavar="FIELD=VALUE",
                            help="a field, e.g. cron='30 2 * * *' or every_ms=60000 "
                                 "(read as JSON when it parses)")
    trigger = actions.add_parser("trigger", help="run a schedule's job now")
    trigger.add_argument("schedule_id", help=SCHEDULE_ID)
    trigger.add_argument("--idempotency-key", help="the same key runs the job once")
    backfill = actions.add_parser(
        "backfill", help="run every fire time in a past range now (each once, however often "
                         "the same range is backfilled)")
    backfill.add_argument("schedule_id", help=SCHEDULE_ID)
    backfill.add_argument("--from", dest="start", required=True, metavar="TIME",
                          help="the range's start, inclusive: ISO 8601 with an offset, "
                               "e.g. 2026-03-01T00:00:00Z")
    backfill.add_argument("--to", dest="end", required=True, metavar="TIME",
                          help="the range's end, inclusive (same form)")
    backfill.add_argument("--json", action="store_true", help="the API's answer as JSON")
    preview = actions.add_parser("next", help="the next fire times, in the schedule's zone")
    preview.add_argument("schedule_id", help=SCHEDULE_ID)
    preview.add_argument("--count", type=int, default=5, help="how many (default 5)")
    preview.add_argument("--after", metavar="TIME",
                         help="from this time on instead of now: ISO 8601 with an offset, e.g. "
                              "2027-03-28T00:00:00Z (to check a daylight-saving day ahead)")
    defer = actions.add_parser("defer-effect", help="execute a deferred effect at a wall time "
                               "or, with --world, at a world time of your clock")
    defer.add_argument("effect_id", help="the effect's id (its one-off schedule's id)")
    defer.add_argument("--at", required=True, help="when: ISO 8601, e.g. 1492-10-12T09:00:00Z")
    defer.add_argument("--world", action="store_true", help="--at is a world time")
    runs = actions.add_parser("runs", help="recent runs and their outcome")
    runs.add_argument("schedule_id", help=SCHEDULE_ID)
    runs.add_argument("--limit", type=int, default=20, help="how many, newest first (default 20)")


# --- dead letters ---------------------------------------------------------------------------

def _when(text: str) -> datetime:
    from cronbus.agents.processing.dead_letters import parse_when

    try:
        return parse_when(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dead_letter_topic(name: str) -> str:
    """A job topic (any priority tier's) or its dead-letter topic, as the dead-letter topic."""
    try:
        job_type = topics.job_type_of(name)
    except ValueError:
        job_type = None
    if job_type is not None:
        job = topics.job_topic(job_type)
        if name in (*topics.tier_topics(job_type), topics.dead_letter_topic(job)):
            return topics.dead_letter_topic(job)
    raise argparse.ArgumentTypeError(
        f"{name!r} is not a job topic or its dead-letter topic (e.g. "
        f"{topics.dead_letter_topic(topics.job_topic('export'))})"
    )


def _dlq_selection(args: argparse.Namespace, settings: Settings) -> tuple[list[str], Any]:
    from cronbus.agents.processing.dead_letters import DeadLetterFilter
    from cronbus.agents.processing.replay import dead_letter_topics

    chosen = args.topic or dead_letter_topics(_job_types(settings, args.job_type))
    rule = DeadLetterFilter(tenant_id=args.tenant, error_type=args.error_type,
                            since=args.since, until=args.until)
    return list(dict.fromkeys(chosen)), rule


def _dlq_table(letters: Sequence[Any]) -> str:
    columns = ("dead at", "topic[partition]@offset", "tenant", "job id", "error type", "attempts",
               "error")
    rows = [(
        letter.dead_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{letter.topic}[{letter.partition}]@{letter.offset}",
        letter.tenant_id or "-", letter.job_id or "-", letter.error_type or "-",
        "-" if letter.attempts is None else str(letter.attempts),
        (letter.error or "-").replace("\n", " ")[:60],
    ) for letter in letters]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def cmd_dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    from cronbus.agents.processing.replay import find_dead_letters

    try:
        chosen, rule = _dlq_selection(args, settings)
    except ValueError as exc:
        print(f"cronbus dlq list: {exc}", file=sys.stderr)
        return 2
    letters = asyncio.run(find_dead_letters(settings.kafka, chosen, rule))
    if args.json:
        print(json.dumps([letter.as_dict() for letter in letters], indent=2))
    else:
        print(_dlq_table(letters))
        print(f"{len(letters)} dead letter(s) in {', '.join(chosen)}", file=sys.stderr)
    return 0


def cmd_dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    from cronbus.agents.cli.progress import ProgressBar
    from cronbus.agents.processing.replay import find_dead_letters, replay

    try:
        chosen, rule = _dlq_selection(args, settings)
    except ValueError as exc:
        print(f"cronbus dlq replay: {exc}", file=sys.stderr)
        return 2

    async def run() -> tuple[Any, list[Any]]:
        letters = await find_dead_letters(settings.kafka, chosen, rule)
        show = args.progress if args.progress is not None else sys.stderr.isatty()
        bar = ProgressBar(len(letters), "replay") if show and not args.dry_run else None
        result = await replay(settings.kafka, letters, force=args.force,
                              dry_run=args.dry_run, on_sent=bar.update if bar else None)
        if bar is not None:
            bar.close()
        return result, letters

    result, letters = asyncio.run(run())
    if args.json:
        print(json.dumps({**result.as_dict(), "dry_run": args.dry_run}, indent=2))
    elif args.dry_run:
        if letters:
            print(_dlq_table(letters))
        print(f"dry run: would replay {result.matched - len(result.refused)} of {result.matched} "
              f"matching dead letter(s) to {dict(result.to_topics) or 'nothing'}; nothing sent")
    else:
        print(f"replayed {result.sent} of {result.matched} matching dead letter(s) to "
              f"{dict(result.to_topics) or 'nothing'}")
    for reason in result.refused:
        print(f"cronbus dlq replay: not replayed: {reason}", file=sys.stderr)
    return 1 if result.refused else 0


# --- demo -----------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from cronbus.agents.cli.demo import run_demo

    return run_demo(tenants=args.tenants, burst=args.burst, every_s=args.every)


def cmd_dev_up(args: argparse.Namespace, settings: Settings) -> int:
    from cronbus.agents.cli.dev import run_dev_up

    return run_dev_up(env_file=args.env_file)


# --- main -----------------------------------------------------------------------------------

DESCRIPTION = ("cronbus: an event-driven job scheduler on Kafka. Run workers, publish events, "
               "and look after jobs, schedules, world clocks and dead letters.")
SCHEDULE_ID = "the schedule's id (`cronbus schedules list` shows them)"


def _describe_commands(parser: argparse.ArgumentParser) -> None:
    """A command's help line is its description too, unless it has one of its own."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, command in action.choices.items():
                command.description = command.description or helps.get(name)
                _describe_commands(command)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="cronbus", description=DESCRIPTION)
    sub = root.add_subparsers(dest="command", required=True)

    default_roles = f"{', '.join(DEFAULT_ROLES[:-1])} and {DEFAULT_ROLES[-1]}"
    worker = sub.add_parser("worker", help=f"run a worker ({default_roles} unless --role is "
                            "given)")
    worker.add_argument("--role", action="append", choices=ROLES,
                        help="a role to run; repeat for several (bridge: Redis pub/sub to Kafka)")
    worker.add_argument("--job-types", metavar="TYPE,TYPE",
                        help="job types the processor serves, comma-separated (default: "
                             "CRONBUS_JOB_TYPES, else all), e.g. invoice-generation,export")
    worker.set_defaults(run=cmd_worker)

    publish = sub.add_parser("publish", help="validate and publish domain events")
    publish.add_argument("event_type", metavar="EVENT_TYPE",
                         help="an event topic the catalog declares, e.g. invoice-due or "
                              "cron-ticks")
    publish.add_argument("--tenant", help="the tenant id (or give tenant_id in the fields)")
    publish.add_argument("--set", type=_field, action="append", metavar="FIELD=VALUE",
                         help="an event field; the value is read as JSON when it parses")
    publish.add_argument("--count", type=int, default=1, help="publish this many events")
    publish.add_argument("--file", help="JSON lines of event fields ('-' for stdin)")
    publish.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="a progress bar on stderr (default: when it is a terminal)")
    publish.set_defaults(run=cmd_publish)

    clocks = sub.add_parser("clocks", help="tenants' world clocks")
    clocks_sub = clocks.add_subparsers(dest="clocks_command", required=True)
    clock_get = clocks_sub.add_parser("get", help="a tenant's world time, as its "
                                      "world-time-advanced events moved it")
    clock_get.add_argument("tenant", help="the tenant (campaign) id")
    clock_get.set_defaults(run=cmd_clock_get)

    jobs = sub.add_parser("jobs", help="job status, queues, retrying failed jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    status = jobs_sub.add_parser("status", help="a job's state, attempts and last error")
    status.add_argument("job_id", help="the job's id, e.g. from `cronbus schedules runs`")
    status.set_defaults(run=cmd_job_status)
    queues = jobs_sub.add_parser("queues", help="per job topic: waiting (consumer lag), active, "
                                 "completed, failed (attempts), dead-lettered")
    queues.add_argument("--job-type", action="append", metavar="TYPE",
                        help="only these job types (repeatable)")
    queues.add_argument("--json", action="store_true", help="JSON output")
    queues.set_defaults(run=cmd_job_queues)
    retry = jobs_sub.add_parser("retry-failed", help="replay a job type's dead letters to its "
                                "job topic (like dlq replay --job-type TYPE)")
    retry.add_argument("job_type", metavar="TYPE", help="a declared job type, e.g. export")
    retry.add_argument("--tenant", help="only this tenant's failed jobs")
    retry.add_argument("--dry-run", action="store_true", help="count them; send nothing")
    retry.add_argument("--json", action="store_true", help="JSON output")
    retry.set_defaults(run=cmd_job_retry_failed)

    _schedules_parser(sub)
    _tokens_parser(sub)

    dlq = sub.add_parser("dlq", help="dead letters: list them, replay them to their job topics")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    for name, run, summary in (
        ("list", cmd_dlq_list, "list dead letters (a table, or --json)"),
        ("replay", cmd_dlq_replay, "send dead letters back to their job topics, key and value "
                                   "unchanged, without error headers"),
    ):
        one = dlq_sub.add_parser(name, help=summary, description=summary)
        where = one.add_mutually_exclusive_group()
        where.add_argument("--job-type", action="append", metavar="TYPE",
                           help="a job type's dead letters (repeatable; default: all)")
        where.add_argument("--topic", action="append", type=_dead_letter_topic,
                           help="a dead-letter topic (or its job topic); repeatable")
        one.add_argument("--tenant", help="only this tenant's")
        one.add_argument("--error-type", help="only this error type, e.g. PermanentError")
        one.add_argument("--since", type=_when, help="dead-lettered at or after: ISO 8601 or an "
                         "age like 30m, 2h, 1d")
        one.add_argument("--until", type=_when, help="dead-lettered at or before (same forms)")
        one.add_argument("--json", action="store_true", help="JSON output")
        if name == "replay":
            one.add_argument("--dry-run", action="store_true",
                             help="show what would be replayed; send nothing")
            one.add_argument("--force", action="store_true",
                             help=f"mark records with {headers.FORCE} so the processor calls "
                             "downstream again even for a completed job id")
            one.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                             help="a progress bar on stderr (default: when it is a terminal)")
        one.set_defaults(run=run)

    dev = sub.add_parser("dev", help="the development stack, for running workers by hand")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    dev_up = dev_sub.add_parser(
        "up", help="start the broker, Redis (unless one answers at CRONBUS_REDIS_URL) and the "
        "development APIs, print the settings to export, stay up until Ctrl-C")
    dev_up.add_argument("--env-file", type=Path, metavar="PATH",
                        help="also write the export lines to PATH (removed on stop), for "
                             "`. PATH` in another shell")
    dev_up.set_defaults(run=cmd_dev_up)

    demo = sub.add_parser("demo", help="start the dev stack and a worker, and publish bursts")
    demo.add_argument("--tenants", type=int, default=5, help="tenants to publish for (default 5)")
    demo.add_argument("--burst", type=int, default=40, help="events per burst")
    demo.add_argument("--every", type=float, default=10.0, help="seconds between bursts")
    demo.set_defaults(run=cmd_demo)
    _describe_commands(root)
    return root


# what each command needs to answer before it starts (publish checks its input first, then the
# broker; a worker checks what its roles need)
REACHES = {cmd_job_status: ("redis",), cmd_clock_get: ("redis",),
           cmd_job_queues: ("broker", "redis"), cmd_job_retry_failed: ("broker",),
           cmd_dlq_list: ("broker",), cmd_dlq_replay: ("broker",),
           cmd_tokens_add: ("redis",), cmd_tokens_list: ("redis",), cmd_tokens_revoke: ("redis",)}


async def _reach(settings: Settings, needs: Sequence[str]) -> None:
    from cronbus.clients.network import reach

    if "broker" in needs:
        await reach.broker(settings.kafka)
    if "redis" in needs:
        await reach.redis(settings.redis_url, options=settings.redis_options())


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"cronbus: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from aiokafka.errors import KafkaConnectionError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from cronbus.clients.network.reach import Unreachable

    try:
        asyncio.run(_reach(settings, REACHES.get(args.run, ())))
        return int(args.run(args, settings))
    except SettingsError as exc:
        print(f"cronbus: {exc}", file=sys.stderr)
        return 2
    except (Unreachable, KafkaConnectionError, RedisConnectionError) as exc:
        # the last two: a command that met an outage after its start, named as well
        if isinstance(exc, KafkaConnectionError):
            exc = Unreachable(Settings.env_name("broker_url"), ",".join(settings.broker_url), str(exc))
        elif isinstance(exc, RedisConnectionError):
            exc = Unreachable(Settings.env_name("redis_url"), settings.redis_url, str(exc))
        print(f"cronbus: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
