"""The development downstream API: a real GraphQL server (Ariadne under uvicorn).

It stands in for a customer's API in tests and the demo. It records every request it
receives, applies each ``Idempotency-Key`` at most once (a repeat gets the first answer
back, marked ``applied: false``), and can be told to fail.

Control endpoints (JSON):

- ``GET  /_control/requests``  every request so far, in order
- ``POST /_control/fail``      ``{"status": 500, "times": 3, "retry_after": 1}``: answer the
  next ``times`` calls (all, if null) with ``status``; 400 answers a GraphQL validation error;
  with ``"every": k`` only every k-th call fails (the k-th, 2k-th, ...: an API failing
  intermittently), ``times`` then counting the failures
- ``DELETE /_control/fail``    stop failing
- ``POST /_control/delay``     ``{"seconds": 0.5}``: every GraphQL call is applied at once and
  answered that much later (a slow API)
- ``POST /_control/reset``     forget requests and applied keys
- ``GET  /_control/applied``   how many times each ``Idempotency-Key``'s effect was applied (a
  repeat of an applied key is answered, not applied again: exactly once is every key at 1)
- ``GET  /_control/applied-count``  ``{"keys", "applications", "requests"}``: the counts alone,
  cheap to ask often
- ``GET  /_control/applied-inputs``  each applied ``Idempotency-Key``'s input, as its first
  call carried it (which events a window's job covered, which schedule a tick's job is of)

Every request is recorded with its arrival time and its ``caller``: the URL's ``caller`` query
parameter, so callers given URLs of their own (``/graphql?caller=worker-1``) can be told apart.

Accounting exports (the scheduled exports design): ``startExport(input)`` starts one (once per
``Idempotency-Key``: a repeat answers the same ``exportId``), ``export(id)`` says how it is
(``processing``, then ``completed`` with a ``fileName`` or ``failed`` with an ``error``).

- ``POST /_control/exports``   ``{"outcome": "failed", "error": "...", "after_s": 0.5}``: how
  exports started from now end, and after how long (default: completed at once)
- ``GET  /_control/exports``   every export started, by id, with how often it was started

Run it: ``python -m cronbus.clients.devstack.dev_api --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

from ariadne import MutationType, QueryType, ScalarType, make_executable_schema
from ariadne.asgi import GraphQL
from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse, validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cronbus.clients.devstack.processes import ManagedProcess, port_open

SCHEMA = """
scalar JSON

type Query {
  health: String!
  export(id: ID!): Export
}

input StartExportInput {
  tenantId: String!
  jobId: String!
  exportType: String!
  config: JSON
  scheduleId: String
}

type ExportStarted {
  exportId: ID!
  status: String!
  applied: Boolean!
}

type Export {
  id: ID!
  tenantId: String!
  exportType: String!
  status: String!
  error: String
  fileName: String
}

input GenerateInvoiceInput {
  tenantId: String!
  jobId: String!
  eventIds: [String!]!
  eventCount: Int!
}

input RunJobInput {
  tenantId: String!
  jobId: String!
  type: String!
  payload: JSON
}

type JobResult {
  jobId: String!
  tenantId: String!
  applied: Boolean!
  appliedAt: Float!
}

type Mutation {
  generateInvoice(input: GenerateInvoiceInput!): JobResult!
  runJob(input: RunJobInput!): JobResult!
  startExport(input: StartExportInput!): ExportStarted!
}
"""


@dataclass
class Failure:
    status: int
    times: int | None  # failures still to answer; None: until told otherwise
    retry_after: float | None = None
    every: int = 1  # only every k-th call fails
    seen: int = 0  # calls since told


@dataclass
class FailSwitch:
    """What a development API was told to fail with, for how many more calls; its control
    endpoint is ``POST /_control/fail`` (``DELETE`` to stop)."""

    failure: Failure | None = None

    def take(self) -> Failure | None:
        """The failure this call answers with, counting it; None to answer normally."""
        failure = self.failure
        if failure is None:
            return None
        failure.seen += 1
        if failure.seen % failure.every:
            return None  # a call between two failures
        if failure.times is not None:
            failure.times -= 1
            if failure.times <= 0:
                self.failure = None
        return failure

    async def control(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.failure = None
            return JSONResponse({"failing": False})
        body = await request.json()
        every = 1 if body.get("every") is None else int(body["every"])
        if every < 1:
            return JSONResponse({"error": "every is a whole number >= 1"}, status_code=400)
        self.failure = Failure(int(body.get("status", 500)), body.get("times"),
                               body.get("retry_after"), every=every)
        return JSONResponse({"failing": asdict(self.failure)})


@dataclass
class RecordedRequest:
    seq: int
    at: float
    path: str
    operation: str | None
    tenant_id: str | None
    job_id: str | None
    idempotency_key: str | None
    status: int
    applied: bool
    caller: str | None = None


@dataclass
class ExportRun:
    """One export started through ``startExport``; it ends ``outcome`` at ``ends_at``."""

    id: str
    tenant_id: str
    job_id: str
    export_type: str
    config: dict[str, Any]
    schedule_id: str | None
    started_at: float
    ends_at: float
    outcome: str
    error: str | None
    starts: int = 1

    def view(self, now: float) -> dict[str, Any]:
        done = now >= self.ends_at
        status = self.outcome if done else "processing"
        return {"id": self.id, "tenantId": self.tenant_id, "exportType": self.export_type,
                "status": status, "error": self.error if status == "failed" else None,
                "fileName": f"{self.id}.{self.export_type.lower()}.zip"
                if status == "completed" else None}


@dataclass
class ExportOutcome:
    """How exports started from now end (``POST /_control/exports``)."""

    outcome: str = "completed"
    error: str | None = None
    after_s: float = 0.0


@dataclass
class DevApiState:
    requests: list[RecordedRequest] = field(default_factory=list)
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    failing: FailSwitch = field(default_factory=FailSwitch)
    delay_s: float = 0.0
    applications: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # applied key -> its input
    exports: dict[str, ExportRun] = field(default_factory=dict)
    export_keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> export id
    export_outcome: ExportOutcome = field(default_factory=ExportOutcome)

    def record(self, request: Request, status: int, **found: Any) -> None:
        self.requests.append(RecordedRequest(
            seq=len(self.requests) + 1, at=time.time(), path=request.url.path,
            operation=found.get("operation"), tenant_id=found.get("tenant_id"),
            job_id=found.get("job_id"), idempotency_key=request.headers.get("idempotency-key"),
            status=status, applied=found.get("applied", False),
            caller=request.query_params.get("caller"),
        ))



def create_dev_api() -> Starlette:
    state = DevApiState()
    query, mutation, json_scalar = QueryType(), MutationType(), ScalarType("JSON")
    query.set_field("health", lambda *_: "ok")

    def apply(info: Any, operation: str, data: dict[str, Any]) -> dict[str, Any]:
        request: Request = info.context["request"]
        key = request.headers.get("idempotency-key") or data["jobId"]
        first = key not in state.applied
        if first:
            state.applications[key] = state.applications.get(key, 0) + 1
            state.inputs[key] = data
            state.applied[key] = {
                "jobId": data["jobId"], "tenantId": data["tenantId"], "appliedAt": time.time()
            }
        state.record(request, 200, operation=operation, tenant_id=data["tenantId"],
                     job_id=data["jobId"], applied=first)
        return {**state.applied[key], "applied": first}

    def start_export(info: Any, data: dict[str, Any]) -> dict[str, Any]:
        request: Request = info.context["request"]
        key = request.headers.get("idempotency-key") or data["jobId"]
        export_id = state.export_keys.get(key)
        first = export_id is None
        if export_id is None:
            now, told = time.time(), state.export_outcome
            export_id = f"exp-{len(state.exports) + 1}"
            state.export_keys[key] = export_id
            state.applications[key] = state.applications.get(key, 0) + 1
            state.exports[export_id] = ExportRun(
                id=export_id, tenant_id=data["tenantId"], job_id=data["jobId"],
                export_type=data["exportType"], config=data.get("config") or {},
                schedule_id=data.get("scheduleId"), started_at=now, ends_at=now + told.after_s,
                outcome=told.outcome, error=told.error)
        else:
            state.exports[export_id].starts += 1
        state.record(request, 200, operation="startExport", tenant_id=data["tenantId"],
                     job_id=data["jobId"], applied=first)
        return {"exportId": export_id, "status": "processing", "applied": first}

    def read_export(_: Any, info: Any, id: str) -> dict[str, Any] | None:
        found = state.exports.get(id)
        return None if found is None else found.view(time.time())

    query.set_field("export", read_export)
    mutation.set_field("startExport", lambda _, info, input: start_export(info, input))
    mutation.set_field("generateInvoice", lambda _, info, input: apply(info, "generateInvoice", input))
    mutation.set_field("runJob", lambda _, info, input: apply(info, "runJob", input))
    graphql = GraphQL(make_executable_schema(SCHEMA, query, mutation, json_scalar),
                      query_parser=parsed_query, query_validator=validated_once)

    async def serve_graphql(scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        failure = state.failing.take() if request.method == "POST" else None
        if failure is None:
            await graphql(scope, receive, _answer_late(send, state.delay_s) if state.delay_s else send)
            return
        state.record(request, failure.status, operation="(told to fail)")
        if failure.status == 400:
            body = {"errors": [{"message": "input rejected", "extensions": {"code": "BAD_USER_INPUT"}}]}
        else:
            body = {"errors": [{"message": f"told to fail with {failure.status}"}]}
        headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after else None
        await JSONResponse(body, status_code=failure.status, headers=headers)(scope, receive, send)

    async def requests(_: Request) -> Response:
        return JSONResponse([asdict(r) for r in state.requests])

    async def applied(_: Request) -> Response:
        return JSONResponse(state.applications)

    async def applied_inputs(_: Request) -> Response:
        return JSONResponse(state.inputs)

    async def applied_count(_: Request) -> Response:
        return JSONResponse({"keys": len(state.applications),
                             "applications": sum(state.applications.values()),
                             "requests": len(state.requests)})

    async def delay(request: Request) -> Response:
        state.delay_s = float((await request.json()).get("seconds", 0))
        return JSONResponse({"delay_s": state.delay_s})

    async def exports(request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            outcome = body.get("outcome", "completed")
            if outcome not in ("completed", "failed"):
                return JSONResponse({"error": "outcome is completed or failed"}, status_code=400)
            state.export_outcome = ExportOutcome(outcome, body.get("error"),
                                                 float(body.get("after_s", 0)))
            return JSONResponse(asdict(state.export_outcome))
        now = time.time()
        return JSONResponse({export_id: {**run.view(now), "jobId": run.job_id,
                                         "config": run.config, "scheduleId": run.schedule_id,
                                         "starts": run.starts}
                             for export_id, run in state.exports.items()})

    async def reset(_: Request) -> Response:
        state.delay_s = 0.0
        state.exports.clear()
        state.export_keys.clear()
        state.export_outcome = ExportOutcome()
        state.requests.clear()
        state.applied.clear()
        state.applications.clear()
        state.inputs.clear()
        state.failing.failure = None
        return JSONResponse({"reset": True})

    return Starlette(routes=[
        Route("/_control/requests", requests),
        Route("/_control/fail", state.failing.control, methods=["POST", "DELETE"]),
        Route("/_control/delay", delay, methods=["POST"]),
        Route("/_control/reset", reset, methods=["POST"]),
        Route("/_control/applied", applied),
        Route("/_control/applied-inputs", applied_inputs),
        Route("/_control/applied-count", applied_count),
        Route("/_control/exports", exports, methods=["GET", "POST"]),
        Route("/graphql", AsgiEndpoint(serve_graphql), methods=["GET", "POST"]),
    ])


# A caller sends the same few operations thousands of times: parsing and validating each
# request again made the API (not cronbus) the slowest part of a test (~280 calls/s).
@lru_cache(maxsize=256)
def _parse(query: str) -> DocumentNode:
    return parse(query)


def parsed_query(_context: Any, data: dict[str, Any]) -> DocumentNode:
    return _parse(data["query"])


# by document object (documents come from the parse cache: one per query text); each entry
# holds its document, so no later document can be given a cached id
_validations: dict[tuple[int, int], tuple[DocumentNode, list[GraphQLError]]] = {}


def validated_once(schema: GraphQLSchema, document_ast: DocumentNode, rules: Any = None,
                    max_errors: int | None = None, **kwargs: Any) -> list[GraphQLError]:
    key = (id(schema), id(document_ast))
    if key not in _validations:
        errors = validate(schema, document_ast, rules=rules, max_errors=max_errors, **kwargs)
        _validations[key] = (document_ast, errors)
    return _validations[key][1]


def _answer_late(send: Any, delay_s: float) -> Any:
    """``send`` that holds the answer back ``delay_s``: the call is applied at once, its answer
    arrives late, as from an API that is slow after doing the work (the risky case for a
    caller that stops: the effect happened, the answer was not seen)."""
    async def late(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(delay_s)
        await send(message)

    return late


class AsgiEndpoint:
    """Starlette routes a callable object (not a function) as a raw ASGI app."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)


def graphql_app(schema: str, query: QueryType, mutation: MutationType, state: Any, *,
                seed: Any, show: Any) -> Starlette:
    """A development GraphQL API of ``schema`` (each operation parsed and validated once: a test
    waits on cronbus, not on this server) with its control endpoints: ``seed`` and ``show`` its
    state, ``fail`` through ``state.failing`` (the next calls answer that status) and ``delay``
    (``state.delay_s``: every call answered that much later)."""
    graphql = GraphQL(make_executable_schema(schema, query, mutation, ScalarType("JSON")),
                      query_parser=parsed_query, query_validator=validated_once)

    async def serve_graphql(scope: Any, receive: Any, send: Any) -> None:
        failure = state.failing.take() if Request(scope, receive).method == "POST" else None
        if failure is not None:
            body = {"errors": [{"message": f"told to fail with {failure.status}"}]}
            await JSONResponse(body, status_code=failure.status)(scope, receive, send)
            return
        await graphql(scope, receive, send)

    async def delay(request: Request) -> Response:
        state.delay_s = float((await request.json()).get("seconds", 0))
        return JSONResponse({"delay_s": state.delay_s})

    return Starlette(routes=[
        Route("/_control/seed", seed, methods=["POST"]),
        Route("/_control/state", show),
        Route("/_control/fail", state.failing.control, methods=["POST", "DELETE"]),
        Route("/_control/delay", delay, methods=["POST"]),
        Route("/graphql", AsgiEndpoint(serve_graphql), methods=["GET", "POST"]),
    ])


class ApiProcess:
    """A development API (a module of this folder whose ``main`` takes ``--host``/``--port``) in
    a child process of its own, on a free port."""

    name = "dev-api"
    module = "cronbus.clients.devstack.dev_api"

    def __init__(self, log_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.log_path = log_dir / f"{self.name}.log"
        # a port of its own is bound here and handed to the child (a port picked free and bound
        # later could be taken by another process meanwhile, and port_open would then see *its*
        # server); bound again, on the same port, when it starts after a stop
        self._hands_over = port is None
        self._socket: socket.socket | None = None
        self.port = self._bind(0) if port is None else port
        self.process = self._process()

    def _bind(self, port: int) -> int:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, port))
        self._socket.set_inheritable(True)
        return int(self._socket.getsockname()[1])

    def _process(self) -> ManagedProcess:
        argv = [sys.executable, "-m", self.module, "--host", self.host, "--port", str(self.port)]
        fds = [self._socket.fileno()] if self._socket is not None else []
        return ManagedProcess(self.name, [*argv, *(f"--fd={fd}" for fd in fds)],
                              log_path=self.log_path, pass_fds=fds)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/graphql"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.port}/_control"

    def launch(self) -> None:
        """Start the child; :meth:`wait_listening` waits for it."""
        if self._hands_over and self._socket is None:  # stopped before: the same port again
            self._bind(self.port)
            self.process = self._process()
        self.process.start()

    def wait_listening(self, timeout_s: float = 20.0) -> None:
        self.process.wait_until(lambda: port_open(self.host, self.port), timeout_s, "listening")

    def start(self, timeout_s: float = 20.0) -> Self:
        self.launch()
        self.wait_listening(timeout_s)
        return self

    def stop(self) -> None:
        """Stop the child and let go of the socket (nothing listens: callers are refused)."""
        self.process.stop()
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class DevApi(ApiProcess):
    """The development API in a child process of its own, on a free port."""


def serve(app: Starlette, *, description: str, port: int) -> None:
    """Run a development API under uvicorn from the command line."""
    import uvicorn

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--fd", type=int, help="serve on this socket, bound by the parent")
    args = parser.parse_args()
    if args.fd is not None:
        uvicorn.run(app, fd=args.fd, log_level="warning")
    else:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    serve(create_dev_api(), description="cronbus's development GraphQL API", port=8000)
