"""cronbus settings: one class, read from ``CRONBUS_*`` environment variables.

A wrong or missing value stops start-up with :class:`SettingsError`, whose
message names the variable and the form it expects.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cronbus.streams.security import (
    KafkaAccess,
    SaslMechanism,
    SecurityProtocol,
    TlsFiles,
    redis_options,
)
from cronbus.streams.topics import JOB_TYPE_NAME_PATTERN

ENV_PREFIX = "CRONBUS_"
# settings renamed: the former name is still read, with a warning, while the new one is unset
RENAMED = {"CRONBUS_MAX_ATTEMPTS": "max_retries"}  # it always counted retries, not attempts

log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _broker_list(value: Any) -> list[str]:
    """Accept ``kafka://h1:9092,h2:9092`` (or a list) and return ``["h1:9092", "h2:9092"]``."""
    items = value if isinstance(value, list) else str(value).replace(";", ",").split(",")
    hosts = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        host = item.removeprefix("kafka://")
        name, sep, port = host.rpartition(":")
        if not sep or not name or not port.isdigit() or "/" in host:
            raise ValueError(f"{item!r} is not host:port")
        hosts.append(host)
    if not hosts:
        raise ValueError("no broker given")
    return hosts


def _comma_list(value: Any) -> list[str]:
    """Accept ``a,b`` (or a list) and return ``["a", "b"]``, blanks dropped."""
    items = value if isinstance(value, list) else str(value).split(",")
    return [text for text in (str(i).strip() for i in items) if text]


_TENANT = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
# never echoed in an error message
SECRET_FIELDS = frozenset({"api_token", "web_api_tokens", "payment_webhook_secrets",
                           "kafka_sasl_password", "kafka_ssl_key_password",
                           "redis_ssl_key_password", "api_ssl_key_password",
                           "webhook_signing_key"})


def parse_token_tenants(text: str) -> dict[str, str]:
    """``tok1:tenantA,tok2:tenantB`` as ``{"tok1": "tenantA", ...}``; the error never shows a token."""
    mapping: dict[str, str] = {}
    for number, item in enumerate((i.strip() for i in text.split(",")), 1):
        if not item:
            continue
        token, sep, tenant = item.partition(":")  # a token holds no colon; a tenant may
        if not sep or not token.strip():
            raise ValueError(f"pair {number} is not token:tenant")
        if not _TENANT.match(tenant.strip()):
            raise ValueError(f"pair {number}: the tenant is not letters, digits or ._:@-")
        mapping[token.strip()] = tenant.strip()
    return mapping


URL_PATTERN = r"^https?://[^\s/]+(/\S*)?$"
# the service a job type calls unless it names another: CRONBUS_API_URL and its neighbours
DEFAULT_SERVICE = "api"


# a downstream service's breaker, the same whether set per service (CRONBUS_SERVICES__<NAME>__...)
# or, for the api service, at the top level (CRONBUS_BREAKER_...)
BreakerFailMax = Annotated[int, Field(
    default=5, ge=1, le=1000,
    description="consecutive failures that open the circuit, a whole number 1..1000")]
BreakerResetTimeout = Annotated[float, Field(
    default=30.0, gt=0, le=3600, description="seconds an open circuit waits before a probe")]
# a rate catches an API failing every other call, which never fails fail_max times in a row
BreakerErrorRate = Annotated[float, Field(
    default=0.5, gt=0, le=1,
    description="the share of a worker's calls in the window failing (retryably) that opens "
                "the circuit, a number > 0 and <= 1, e.g. 0.5")]
BreakerMinCalls = Annotated[int, Field(
    default=10, ge=1, le=100_000,
    description="calls a worker made in the window before the error rate may open the "
                "circuit, a whole number 1..100000")]
# 30 s: reached by min_calls at one call every 3 s, and a service failing half its calls trips
# within one window; as long as the reset timeout, so one window spans one cycle
BreakerWindow = Annotated[float, Field(
    default=30.0, gt=0, le=3600,
    description="seconds of recent calls the error rate is taken over, > 0 and <= 3600")]


class ServiceSettings(BaseModel):
    """One downstream service (``CRONBUS_SERVICES__<NAME>__URL`` and its neighbours)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=URL_PATTERN,
                     description="its GraphQL endpoint or REST base, e.g. https://world/graphql")
    token: SecretStr | None = Field(default=None, description="a bearer token (optional)")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="seconds, > 0 and <= 300")
    ssl_ca_file: str | None = Field(
        default=None, description="a PEM file of the CA(s) to trust for its certificate "
                                  "(default: the system's)")
    ssl_cert_file: str | None = Field(
        default=None, description="a PEM client certificate (mutual TLS)")
    ssl_key_file: str | None = Field(
        default=None, description="the PEM private key of ssl_cert_file (default: in that file)")
    ssl_key_password: SecretStr | None = Field(
        default=None, description="the password of an encrypted client key")
    breaker_fail_max: BreakerFailMax
    breaker_reset_timeout_s: BreakerResetTimeout
    breaker_error_rate: BreakerErrorRate
    breaker_min_calls: BreakerMinCalls
    breaker_window_s: BreakerWindow

    @property
    def tls(self) -> TlsFiles:
        """Its TLS files (none set: the system's CAs, no client certificate)."""
        return TlsFiles(ca_file=self.ssl_ca_file, cert_file=self.ssl_cert_file,
                        key_file=self.ssl_key_file, key_password=self.ssl_key_password)


class Settings(BaseSettings):
    """Everything a cronbus process can be told. Each field's description is its expected form."""

    # CRONBUS_SERVICES__WORLD__URL: "__" separates a nested setting's parts
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True,
                                      env_nested_delimiter="__")

    # --- the outside world
    # NoDecode: the environment gives a comma list, not JSON
    broker_url: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1:9092"],
        description="comma-separated Kafka bootstrap servers, e.g. kafka://127.0.0.1:9092,k2:9092",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="how Kafka clients connect: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or "
                    "SASL_SSL (SASL over TLS, e.g. Confluent Cloud, MSK)",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="PLAIN",
        description="the SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="the SASL user name (with SASL_PLAINTEXT or SASL_SSL)")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="the SASL password (with SASL_PLAINTEXT or SASL_SSL)")
    kafka_ssl_ca_file: str | None = Field(
        default=None,
        description="a PEM file of the CA(s) to trust for the brokers' certificates "
                    "(default: the system's), e.g. /etc/cronbus/kafka-ca.pem",
    )
    kafka_ssl_cert_file: str | None = Field(
        default=None, description="a PEM client certificate for mutual TLS (optional)")
    kafka_ssl_key_file: str | None = Field(
        default=None,
        description="the PEM private key of CRONBUS_KAFKA_SSL_CERT_FILE (default: in that file)")
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="the password of an encrypted client key (optional)")
    kafka_ssl_check_hostname: bool = Field(
        default=True,
        description="whether a broker's certificate must name the host connected to, "
                    "true or false")
    redis_ssl_ca_file: str | None = Field(
        default=None,
        description="a PEM file of the CA(s) to trust for a rediss:// server's certificate "
                    "(default: the system's), e.g. /etc/cronbus/redis-ca.pem",
    )
    redis_ssl_cert_file: str | None = Field(
        default=None, description="a PEM client certificate for a rediss:// server (optional)")
    redis_ssl_key_file: str | None = Field(
        default=None,
        description="the PEM private key of CRONBUS_REDIS_SSL_CERT_FILE (default: in that file)")
    redis_ssl_key_password: SecretStr | None = Field(
        default=None, description="the password of an encrypted client key (optional)")
    redis_ssl_check_hostname: bool = Field(
        default=True,
        description="whether a rediss:// server's certificate must name its host, true or false")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        pattern=r"^rediss?://",
        description="a Redis URL, e.g. redis://:password@127.0.0.1:6379/0 or rediss://host:6380/0",
    )
    redis_namespace: str = Field(
        default="cronbus",
        pattern=r"^[A-Za-z0-9._:-]{1,64}$",
        description="a key prefix for everything cronbus keeps in Redis, e.g. cronbus",
    )
    bridge_redis_url: str | None = Field(
        default=None,
        pattern=r"^rediss?://",
        description=(
            "the Redis URL the pub/sub bridge listens on (default: CRONBUS_REDIS_URL), "
            "e.g. rediss://:password@host:6380/0"
        ),
    )
    bridge_patterns: Annotated[list[str], NoDecode] = Field(
        default=["campaign.*.worldTimeAdvanced", "campaign.*.entityModified"],
        min_length=1,
        description=(
            "comma-separated Redis PSUBSCRIBE patterns, "
            "e.g. campaign.*.worldTimeAdvanced,campaign.*.entityModified"
        ),
    )
    api_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="the downstream GraphQL endpoint, e.g. https://api.example.com/graphql",
    )
    api_token: SecretStr | None = Field(
        default=None, description="a bearer token for the downstream API (optional)"
    )
    api_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="seconds, a number > 0 and <= 300, e.g. 10"
    )
    api_ssl_ca_file: str | None = Field(
        default=None,
        description="a PEM file of the CA(s) to trust for CRONBUS_API_URL's certificate "
                    "(default: the system's), e.g. /etc/cronbus/api-ca.pem",
    )
    api_ssl_cert_file: str | None = Field(
        default=None, description="a PEM client certificate for CRONBUS_API_URL (mutual TLS)")
    api_ssl_key_file: str | None = Field(
        default=None,
        description="the PEM private key of CRONBUS_API_SSL_CERT_FILE (default: in that file)")
    api_ssl_key_password: SecretStr | None = Field(
        default=None, description="the password of an encrypted client key (optional)")
    event_expiration_concurrency: int = Field(
        default=10, ge=1, le=1000,
        description="expireEvent calls one event-expiration job makes at once, 1..1000",
    )
    query_cache_ttl_s: float = Field(
        default=300.0, ge=0, le=86400,
        description="seconds a handler's cached query answer is kept (0: none is cached), 0..86400",
    )
    services: dict[str, ServiceSettings] = Field(
        default_factory=dict,
        description=(
            "the downstream services job types name, one nested setting each: "
            "CRONBUS_SERVICES__<NAME>__URL (required), __TOKEN, __TIMEOUT_S, __SSL_CA_FILE, "
            "__SSL_CERT_FILE, __SSL_KEY_FILE, __SSL_KEY_PASSWORD, "
            "__BREAKER_FAIL_MAX, __BREAKER_RESET_TIMEOUT_S, __BREAKER_ERROR_RATE, "
            "__BREAKER_MIN_CALLS, __BREAKER_WINDOW_S; the service 'api' is CRONBUS_API_URL"
        ),
    )
    payment_webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "each payment provider's webhook signing secret, as JSON "
            '{"stripe": "whsec_..."} or one variable per provider, '
            "CRONBUS_PAYMENT_WEBHOOK_SECRETS__STRIPE=whsec_...; two secrets of one provider "
            "(while rotating) are separated by a space"
        ),
    )
    payment_webhook_tolerance_s: float = Field(
        default=300.0, ge=1, le=86400,
        description="seconds a webhook's signature timestamp may be from its receipt, 1..86400",
    )

    # --- the app
    app_id: str = Field(
        default="cronbus",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="the consumer group / app id, letters, digits, . _ -, e.g. cronbus",
    )
    partitions: int = Field(
        default=8, ge=1, le=1024, description="partitions per topic, a whole number 1..1024"
    )
    broker_session_timeout_s: float = Field(
        default=10.0, ge=1, le=300,
        description="seconds without a heartbeat before a worker leaves its group, 1..300",
    )
    fetch_max_wait_ms: int = Field(
        default=100, ge=1, le=5000,
        description=(
            "milliseconds a fetch of the ingest and processor consumers waits at the broker "
            "once records stopped coming, 1..5000: an idle consumer asks this often, and a record "
            "after a quiet spell waits up to this long to be fetched on a broker that answers a "
            "fetch only when its wait ends (Tansu; Apache Kafka answers as soon as records arrive)"
        ),
    )
    fetch_busy_wait_ms: int = Field(
        default=20, ge=1, le=5000,
        description=(
            "milliseconds a fetch of the ingest and processor consumers waits while records "
            "flow, 1..5000 and at most fetch_max_wait_ms: each hop's wait while busy (after a "
            "fetch of nothing the wait doubles back to fetch_max_wait_ms)"
        ),
    )
    broker_rebalance_timeout_s: float = Field(
        default=10.0, ge=1, le=300,
        description="seconds the group waits for members to rejoin a rebalance, 1..300",
    )
    replication_factor: int = Field(
        default=1, ge=1, le=7, description="topic replication factor, a whole number 1..7"
    )
    web_host: str = Field(default="127.0.0.1", description="the worker's web bind address")
    web_port: int = Field(
        default=6066, ge=1, le=65535, description="the worker's web port, 1..65535"
    )
    data_dir: str = Field(
        default=".cronbus-data", description="a directory for the worker's local state"
    )

    # --- policies
    debounce_window_s: float = Field(
        default=5.0, gt=0, le=86400,
        description="trailing debounce window in seconds, a number > 0, e.g. 5",
    )
    debounce_policies: str = Field(
        default="",
        pattern=r"^[\sa-z=:.,0-9-]*$",
        description=(
            "job-type=policy pairs, comma-separated, overriding the defaults; a policy is "
            "leading:SECONDS, trailing[:SECONDS[:MAX_WAIT]] or immediate, "
            "e.g. export=immediate,bank-sync=leading:30"
        ),
    )
    debounce_max_event_ids: int = Field(
        default=100, ge=1, le=10000,
        description="how many event ids a job lists at most, a whole number 1..10000",
    )
    event_max_bytes: int = Field(
        default=1_048_576, ge=256,
        description="the largest event record accepted, in bytes, >= 256",
    )
    max_retries: int = Field(
        default=3, ge=0, le=100,
        description="retries after a job's first attempt before it is dead-lettered, 0..100"
    )
    retry_backoff_s: float = Field(
        default=1.0, ge=0, le=3600, description="first retry delay in seconds; doubles per attempt"
    )
    retry_after_max_s: float = Field(
        default=3600.0, ge=0, le=86400,
        description="the longest wait a 429's Retry-After (or a retry record's due time) may "
                    "ask for, in seconds 0..86400; a longer one is cut to this",
    )
    # the api service's breaker (every other service's is under CRONBUS_SERVICES__<NAME>__)
    breaker_fail_max: BreakerFailMax
    breaker_reset_timeout_s: BreakerResetTimeout
    breaker_error_rate: BreakerErrorRate
    breaker_min_calls: BreakerMinCalls
    breaker_window_s: BreakerWindow
    job_modules: Annotated[list[str], NoDecode] = Field(
        default=["cronbus.families"],
        description=(
            "comma-separated Python modules declaring the job types and event types to run "
            "(each has JOB_TYPES, maybe EVENT_TYPES); cronbus.families are cronbus's own, "
            "e.g. cronbus.families,myapp.jobs"
        ),
    )
    job_types: Annotated[list[str], NoDecode] = Field(
        default=[],
        description=(
            "comma-separated job types the processor serves (empty: all), "
            "e.g. invoice-generation,export"
        ),
    )
    api_transport: Literal["h1", "aiohttp", "httpx"] = Field(
        default="h1",
        description=(
            "the transport under httpx's API for downstream calls: h1 (kept-alive HTTP/1.1 "
            "parsed by httptools, fastest), aiohttp (an aiohttp session) or httpx (its own pool)"
        ),
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="the worker's event loop: uvloop (faster, where installed) or asyncio",
    )
    processor_concurrency: int = Field(
        default=50, ge=1, le=10000,
        description="jobs a processor worker runs at once, a whole number 1..10000",
    )
    processor_commit_interval_s: float = Field(
        default=0.2, gt=0, le=60,
        description="seconds between offset commits of finished jobs, > 0 and <= 60",
    )
    job_status_ttl_s: int = Field(
        default=7 * 86400, ge=60, description="seconds a job's status is kept in Redis, >= 60"
    )

    # --- schedules: the web API and the built-in schedules
    web_api_tokens: SecretStr | None = Field(
        default=None,
        description=(
            "bearer tokens of the REST API and the tenant each acts for, comma-separated "
            "token:tenant pairs, e.g. t0k3n-a:acme,t0k3n-b:globex (the system tenant's have the "
            "system scope; tokens made by `cronbus tokens add` live in Redis, hashed)"
        ),
    )
    # 20 a second on average, a burst of a script's or a page's calls let through
    web_api_rate_limit: int = Field(
        default=200, ge=0, le=1_000_000,
        description="requests one API token may make in any CRONBUS_WEB_API_RATE_WINDOW_S "
                    "seconds (one more answers 429 with Retry-After), 0 for no limit, a whole "
                    "number, e.g. 200",
    )
    web_api_rate_window_s: float = Field(
        default=10.0, gt=0, le=3600,
        description="the sliding window of CRONBUS_WEB_API_RATE_LIMIT in seconds, > 0 and "
                    "<= 3600, e.g. 10",
    )
    web_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, le=1_073_741_824,
        description="the largest request body the web server reads, in bytes (a larger one "
                    "answers 413), 1024..1073741824",
    )
    system_tenant: str = Field(
        default="system",
        pattern=r"^[A-Za-z0-9._:@-]{1,128}$",
        description="the tenant that owns the built-in schedules, e.g. system",
    )
    builtin_schedules_off: Annotated[list[str], NoDecode] = Field(
        default=[],
        description=(
            "built-in schedules to keep paused, comma-separated names from "
            "cronbus/agents/schedules/builtins.py, e.g. chat-retention,settlement-growth (or all)"
        ),
    )
    event_expiration_grace_s: int = Field(
        default=300, ge=0, le=86400,
        description="seconds an event may be overdue before the expiration job expires it, 0..86400",
    )
    schedule_misfire_grace_s: float = Field(
        default=10.0, ge=0, le=86400,
        description=(
            "seconds a fire time may be overdue when the ticker gets to it and still count as on "
            "time (later ones follow the schedule's misfire policy), 0..86400"
        ),
    )
    schedule_runs_kept: int = Field(
        default=100, ge=1, le=10000,
        description="fired runs kept per schedule for its run history, a whole number 1..10000",
    )
    backfill_max_runs: int = Field(
        default=1000, ge=1, le=10000,
        description=(
            "fire times one backfill request may run (POST /schedules/{id}/backfill; a range "
            "holding more is refused, naming where to split it), a whole number 1..10000"
        ),
    )

    # --- the process
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="one of DEBUG, INFO, WARNING, ERROR"
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text (readable, for development) or json (one object a line, for production)",
    )
    alert_webhook_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description=(
            "a URL that alerts are POSTed to as JSON (optional), e.g. https://hooks.example.com/cronbus"
        ),
    )
    webhook_signing_key: SecretStr | None = Field(
        default=None, min_length=16,
        description=(
            "the key each tenant's webhook secret is derived from (HMAC-SHA256 of the tenant id), "
            "at least 16 characters; unset: outcome notices by webhook are refused"
        ),
    )
    alert_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="seconds an alert webhook call may take, > 0 and <= 60"
    )
    health_timeout_s: float = Field(
        default=2.0, gt=0, le=60,
        description="seconds each /health check may take before its component counts as down, > 0 and <= 60",
    )
    shutdown_grace_s: float = Field(
        default=15.0, ge=0, le=3600,
        description="seconds a stopping worker lets in-flight jobs finish before handing them back, 0..3600",
    )

    @field_validator("broker_url", mode="before")
    @classmethod
    def _parse_brokers(cls, value: Any) -> list[str]:
        return _broker_list(value)

    @field_validator("bridge_patterns", mode="before")
    @classmethod
    def _parse_patterns(cls, value: Any) -> list[str]:
        return _comma_list(value)

    @field_validator("job_types", mode="before")
    @classmethod
    def _parse_job_types(cls, value: Any) -> list[str]:
        # which exist is the catalog's to say (CRONBUS_JOB_MODULES): checked at start-up
        names = _comma_list(value)
        bad = [n for n in names if not re.match(JOB_TYPE_NAME_PATTERN, n)]
        if bad:
            raise ValueError(f"{', '.join(bad)}: not job type names (lowercase letters, digits, '-')")
        return list(dict.fromkeys(names))

    @field_validator("job_modules", mode="before")
    @classmethod
    def _parse_job_modules(cls, value: Any) -> list[str]:
        names = _comma_list(value)
        bad = [n for n in names if not re.match(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$", n)]
        if bad:
            raise ValueError(f"{', '.join(bad)}: not module names (e.g. myapp.jobs)")
        if not names:
            raise ValueError("no module named: at least one, e.g. cronbus.families")
        return list(dict.fromkeys(names))

    @field_validator("builtin_schedules_off", mode="before")
    @classmethod
    def _parse_builtins_off(cls, value: Any) -> list[str]:
        return _comma_list(value)

    @field_validator("web_api_tokens", mode="after")
    @classmethod
    def _check_api_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_token_tenants(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _check_fetch_waits(self) -> Settings:
        if self.fetch_busy_wait_ms > self.fetch_max_wait_ms:
            raise ValueError(f"CRONBUS_FETCH_BUSY_WAIT_MS={self.fetch_busy_wait_ms} must be at "
                             f"most CRONBUS_FETCH_MAX_WAIT_MS={self.fetch_max_wait_ms}: a busy "
                             f"consumer's fetch waits less than an idle one's")
        return self

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        """Settings that cannot work together are named before anything connects."""
        protocol = self.kafka_security_protocol
        problems = []
        if protocol.startswith("SASL_"):
            missing = [f for f in ("kafka_sasl_username", "kafka_sasl_password")
                       if getattr(self, f) is None]
            if missing:
                problems.append(f"{' and '.join(map(self.env_name, missing))} must be set with "
                                f"CRONBUS_KAFKA_SECURITY_PROTOCOL={protocol}")
        elif self.kafka_sasl_username or self.kafka_sasl_password:
            problems.append(f"CRONBUS_KAFKA_SASL_USERNAME/PASSWORD are set, but "
                            f"CRONBUS_KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL "
                            f"(SASL_PLAINTEXT or SASL_SSL does)")
        if protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
            tls_set = [self.env_name(f) for f in ("kafka_ssl_ca_file", "kafka_ssl_cert_file",
                                                 "kafka_ssl_key_file") if getattr(self, f)]
            if tls_set:
                problems.append(f"{', '.join(tls_set)} set, but CRONBUS_KAFKA_SECURITY_PROTOCOL="
                                f"{protocol} does not use TLS (SSL or SASL_SSL does)")
        for prefix in ("kafka_ssl", "redis_ssl", "api_ssl"):
            for part in ("ca_file", "cert_file", "key_file"):
                field = f"{prefix}_{part}"
                path = getattr(self, field)
                if path and not os.access(path, os.R_OK):
                    problems.append(f"{self.env_name(field)}={path!r}: no readable file there")
            if getattr(self, f"{prefix}_key_file") and not getattr(self, f"{prefix}_cert_file"):
                problems.append(f"{self.env_name(prefix + '_key_file')} is set without "
                                f"{self.env_name(prefix + '_cert_file')}")
        if not problems:  # files that are there but are no PEM CA, certificate or key
            api_tls = TlsFiles(ca_file=self.api_ssl_ca_file, cert_file=self.api_ssl_cert_file,
                               key_file=self.api_ssl_key_file,
                               key_password=self.api_ssl_key_password)
            for prefix, tls in (("kafka_ssl", self.kafka.tls), ("redis_ssl", self.redis_tls),
                                ("api_ssl", api_tls)):
                for part, why in tls.unloadable().items():
                    problems.append(f"{self.env_name(f'{prefix}_{part}')} cannot be loaded "
                                    f"({why})")
        for name, service in self.services.items():  # each downstream service's own files
            variable = f"{ENV_PREFIX}SERVICES__{name.upper()}__SSL_"
            unreadable = [f"{variable}{part.upper()}={path!r}" for part in
                          ("ca_file", "cert_file", "key_file")
                          if (path := getattr(service, f"ssl_{part}"))
                          and not os.access(path, os.R_OK)]
            problems += [f"{u}: no readable file there" for u in unreadable]
            if service.ssl_key_file and not service.ssl_cert_file:
                problems.append(f"{variable}KEY_FILE is set without {variable}CERT_FILE")
            if not unreadable:
                problems += [f"{variable}{part.upper()} cannot be loaded ({why})"
                             for part, why in service.tls.unloadable().items()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def kafka(self) -> KafkaAccess:
        """The brokers and how to reach them: what every Kafka client is made with."""
        return KafkaAccess(
            servers=tuple(self.broker_url), security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism, sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            tls=TlsFiles(ca_file=self.kafka_ssl_ca_file, cert_file=self.kafka_ssl_cert_file,
                         key_file=self.kafka_ssl_key_file,
                         key_password=self.kafka_ssl_key_password,
                         check_hostname=self.kafka_ssl_check_hostname))

    def redis_options(self, url: str | None = None) -> dict[str, Any]:
        """redis-py ``from_url`` options for ``url`` (default CRONBUS_REDIS_URL): the TLS files
        when it is rediss://."""
        return redis_options(url or self.redis_url, self.redis_tls)

    @property
    def redis_tls(self) -> TlsFiles:
        """The TLS files of every rediss:// connection (cronbus's Redis and the bridge's)."""
        return TlsFiles(ca_file=self.redis_ssl_ca_file, cert_file=self.redis_ssl_cert_file,
                        key_file=self.redis_ssl_key_file,
                        key_password=self.redis_ssl_key_password,
                        check_hostname=self.redis_ssl_check_hostname)

    def service(self, name: str) -> ServiceSettings:
        """A downstream service's settings; ``api`` (unless declared under services) is
        CRONBUS_API_URL with its token, timeout and breaker settings. Raises
        :class:`SettingsError` naming what to set for a service nobody declared."""
        declared = self.services.get(name.lower())
        if declared is not None:
            return declared
        if name == DEFAULT_SERVICE:
            self.require("api_url")
            assert self.api_url is not None
            return ServiceSettings(url=self.api_url, token=self.api_token,
                                   timeout_s=self.api_timeout_s,
                                   ssl_ca_file=self.api_ssl_ca_file,
                                   ssl_cert_file=self.api_ssl_cert_file,
                                   ssl_key_file=self.api_ssl_key_file,
                                   ssl_key_password=self.api_ssl_key_password,
                                   breaker_fail_max=self.breaker_fail_max,
                                   breaker_reset_timeout_s=self.breaker_reset_timeout_s,
                                   breaker_error_rate=self.breaker_error_rate,
                                   breaker_min_calls=self.breaker_min_calls,
                                   breaker_window_s=self.breaker_window_s)
        known = sorted({*self.services, *([DEFAULT_SERVICE] if self.api_url else [])})
        raise SettingsError(
            f"service {name!r} has no settings: set {ENV_PREFIX}SERVICES__{name.upper()}__URL "
            f"(services with settings: {', '.join(known) or 'none'})")

    def api_token_tenants(self) -> dict[str, str]:
        """The schedules API's tokens from CRONBUS_WEB_API_TOKENS: token -> tenant."""
        if self.web_api_tokens is None:
            return {}
        return parse_token_tenants(self.web_api_tokens.get_secret_value())

    @field_validator("log_level", "kafka_security_protocol", "kafka_sasl_mechanism",
                     mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{host}" for host in self.broker_url)

    @property
    def bridge_redis(self) -> str:
        """Where the bridge listens: its own URL, else the one Redis cronbus uses."""
        return self.bridge_redis_url or self.redis_url

    def require(self, *names: str) -> None:
        """Stop with a :class:`SettingsError` if a setting this role needs is unset."""
        for name in names:
            if getattr(self, name) is None:
                raise SettingsError(_describe(name, "is missing", None))

    @classmethod
    def env_name(cls, field: str) -> str:
        return f"{ENV_PREFIX}{field.upper()}"


def _describe(field: str, problem: str, value: Any) -> str:
    info = Settings.model_fields.get(field)
    expected = info.description if info and info.description else "see the README"
    shown = "" if value is None else f"={value!r}"
    return f"{Settings.env_name(field)}{shown} {problem}: expected {expected}"


def _describe_service_part(service: str, part: str, reason: str, value: Any) -> str:
    info = ServiceSettings.model_fields.get(part)
    expected = info.description if info and info.description else "see the README"
    shown = "" if value is None or part == "token" else f"={value!r}"
    return (f"{ENV_PREFIX}SERVICES__{service.upper()}__{part.upper()}{shown} is invalid "
            f"({reason}): expected {expected}")


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment (and ``overrides``), or raise :class:`SettingsError`
    naming every problem at once: each malformed or missing setting, and each ``CRONBUS_*``
    variable that is no setting (a typo such as ``CRONBUS_PARTITION`` would change nothing)."""
    for former, field in RENAMED.items():
        if former in os.environ and Settings.env_name(field) not in os.environ:
            log.warning("%s is deprecated: it is %s now (read from the old name until then)",
                        former, Settings.env_name(field))
            overrides.setdefault(field, os.environ[former])
    problems = [_describe_unknown(name) for name in unknown_variables(os.environ)]
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            field = loc[0] if loc else "?"
            reason = error["msg"].removeprefix("Value error, ")
            if not loc:  # settings that cannot work together: the message names them
                problems.append(reason)
                continue
            if field == "services" and len(loc) == 3:  # one service's part: name the variable
                problems.append(_describe_service_part(loc[1], loc[2], reason, error.get("input")))
                continue
            shown = None if field in SECRET_FIELDS else error.get("input")
            problems.append(_describe(field, f"is invalid ({reason})", shown))
    if problems:
        raise SettingsError("; ".join(problems))
    return settings


# read by the command line, not the worker (`cronbus schedules`)
CLI_VARIABLES = frozenset({f"{ENV_PREFIX}SCHEDULES_URL", f"{ENV_PREFIX}SCHEDULES_TOKEN"})


def known_variables() -> frozenset[str]:
    return frozenset({*(Settings.env_name(f) for f in Settings.model_fields), *RENAMED,
                      *CLI_VARIABLES})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``CRONBUS_*`` variables that are no setting. A nested one (``CRONBUS_SERVICES__WORLD__URL``,
    ``CRONBUS_PAYMENT_WEBHOOK_SECRETS__STRIPE``) is known by its setting and checked by its model."""
    known = known_variables()
    return sorted(name for name in environ if name.startswith(ENV_PREFIX)
                  and name not in known and name.split("__", 1)[0] not in known)


def _describe_unknown(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(known_variables()), n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else " (the README lists every setting)"
    return f"{name} is no cronbus setting{hint}"
