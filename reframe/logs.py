"""Logging for every Reframe process: one line format, the job's context on every line, and no
secret in any line.

Each process calls `configure_logging(component, ...)` once when it starts (the API replica, the
dispatcher actor, the render driver, each pipeline actor, the CLI); nothing happens at import.
Lines are JSON (python-json-logger) or text for a terminal (`REFRAME_LOG_FORMAT=json|text|auto`).

Context travels in context variables inside a process (`bound(request_id=..., job_id=...)`) and
explicitly between processes: the render driver gets the job id and attempt on its command line,
and the pipeline's actors get them with their render spec (`LogSetup`). Every line then carries
`component`, and `request_id`, `job_id` and `attempt` where there is one, so one job can be
followed from the request that accepted it to the actor that rendered its last chunk.

Redaction runs in the formatter, on the finished line, so it also covers other libraries'
messages, exception tracebacks and `extra` fields: API keys, bearer tokens, webhook secrets,
signed-URL signatures, share tokens, session cookies, passwords, and the configured secrets
themselves (`Settings.secret_values()`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "json", "text"]

REQUEST_ID_HEADER = "X-Request-ID"
REDACTED = "[redacted]"

# Context of the work a line belongs to. Context variables follow asyncio tasks and are copied
# into the threads FastAPI runs handlers in, so a request's id reaches every line it causes.
_request_id: ContextVar[str | None] = ContextVar("reframe_request_id", default=None)
_job_id: ContextVar[str | None] = ContextVar("reframe_job_id", default=None)
_attempt: ContextVar[int | None] = ContextVar("reframe_attempt", default=None)
_VARS: dict[str, ContextVar[Any]] = {
    "request_id": _request_id,
    "job_id": _job_id,
    "attempt": _attempt,
}

# A client's X-Request-ID is echoed into logs and headers: only a plain token is accepted, so it
# cannot forge log lines or carry anything odd into a header.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """The client's X-Request-ID when it is a plain token, else a new one."""
    if value and _REQUEST_ID_RE.match(value):
        return value
    return new_request_id()


@contextlib.contextmanager
def bound(**fields: str | int | None) -> Iterator[None]:
    """Attach `request_id`, `job_id` and/or `attempt` to every line logged inside the block."""
    unknown = set(fields) - set(_VARS)
    if unknown:
        raise TypeError(f"unknown log context fields: {sorted(unknown)}")
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_context() -> dict[str, str | int]:
    """The context bound here now (to hand to another process)."""
    out: dict[str, str | int] = {}
    for name, var in _VARS.items():
        value = var.get()
        if value is not None:
            out[name] = value
    return out


def job_fields(job_id: str, attempt: int | None = None) -> dict[str, str | int]:
    """`extra=` for a line about a job, where no context is bound (the dispatcher's loop)."""
    fields: dict[str, str | int] = {"job_id": job_id}
    if attempt is not None:
        fields["attempt"] = attempt
    return fields


# -- redaction ----------------------------------------------------------------------------------

_SECRET_QUERY_KEYS = (
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
    "token",
    "access_token",
    "api_key",
    "password",
    "secret",
    "csrf_token",
    "reframe_session",
    "reframe_presession",
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # API keys and webhook signing secrets have recognisable prefixes.
    (re.compile(r"\brf_live_[A-Za-z0-9_\-]{4,}"), "rf_live_" + REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9_\-]{4,}"), "whsec_" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{4,}"), r"\1 " + REDACTED),
    # key=value in query strings, form bodies, cookies and log text; key: "value" in JSON/reprs.
    (
        re.compile(
            r"(?i)\b(" + "|".join(re.escape(k) for k in _SECRET_QUERY_KEYS) + r")=[^&\s\"';,]+"
        ),
        r"\1=" + REDACTED,
    ),
    (
        re.compile(
            r"(?i)([\"']?(?:password|secret|secret_key|s3_secret_access_key|metrics_token|"
            r"webhook_secret|api_key|token)[\"']?\s*[:=]\s*[\"'])[^\"']+([\"'])"
        ),
        r"\1" + REDACTED + r"\2",
    ),
    # Credentials inside URLs: scheme://user:password@host.
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
    # Share links are capabilities: the token in /s/<token> and /share/<token> is the secret.
    (re.compile(r"(/(?:s|share)/)[A-Za-z0-9_\-]{12,}"), r"\1" + REDACTED),
)

# One pass that says whether any pattern could match: most strings of a line (level, logger,
# an ordinary message) have no secret, and one search is much cheaper than every substitution.
_ANY_PATTERN = re.compile(
    "|".join(f"(?:{p.pattern.removeprefix('(?i)')})" for p, _ in _PATTERNS), re.IGNORECASE
)

# Shorter literal values are not replaced: they would match ordinary words.
_MIN_LITERAL = 8


class Redactor:
    """Removes secrets from text: known shapes (patterns) and known values (literals)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        literals = {s for s in secrets if s and len(s) >= _MIN_LITERAL}
        # JSON lines escape some characters; a secret containing them must match escaped too.
        import json

        literals |= {json.dumps(s)[1:-1] for s in literals}
        # Longest first, so a secret that contains another is removed whole.
        self._literals = sorted(literals, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for literal in self._literals:
            if literal in text:
                text = text.replace(literal, REDACTED)
        if not _ANY_PATTERN.search(text):
            return text
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def value(self, value: Any) -> Any:
        """Redact strings inside JSON-able data (dicts, lists) as well."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


# -- formatting ---------------------------------------------------------------------------------


class ContextFilter(logging.Filter):
    """Adds the process's component and the bound context to each record passing a handler."""

    def __init__(self, component: str, context: Mapping[str, str | int] | None = None) -> None:
        super().__init__()
        self.component = component
        # A process-wide context (an actor's job): the default under anything bound later.
        self.context = dict(context or {})

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        for name, var in _VARS.items():
            if getattr(record, name, None) is not None:
                continue  # given with extra=
            value = var.get()
            if value is None:
                value = self.context.get(name)
            if value is not None:
                setattr(record, name, value)
        return True


def _json_formatter_class() -> Callable[[Redactor], logging.Formatter]:
    from pythonjsonlogger.json import JsonFormatter

    class RedactingJsonFormatter(JsonFormatter):
        def __init__(self, redactor: Redactor) -> None:
            super().__init__(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
            self.redactor = redactor

        def add_fields(
            self,
            log_data: dict[str, Any],
            record: logging.LogRecord,
            message_dict: dict[str, Any],
        ) -> None:
            super().add_fields(log_data, record, message_dict)
            log_data["pid"] = record.process

        def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
            redacted: dict[str, Any] = self.redactor.value(dict(log_data))
            return redacted

    return RedactingJsonFormatter


class TextFormatter(logging.Formatter):
    """One readable line: time, level, logger, the context in brackets, the message."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        parts = [str(getattr(record, "component", "") or "")]
        for name, label in (("request_id", "req"), ("job_id", "job"), ("attempt", "attempt")):
            value = getattr(record, name, None)
            if value is not None:
                parts.append(f"{label}={value}")
        shown = " ".join(p for p in parts if p)
        record.context = f" [{shown}]" if shown else ""
        return self.redactor(super().format(record))


def resolve_format(fmt: str, stream: TextIO | None = None) -> Literal["json", "text"]:
    """`auto`: text on a terminal, JSON anywhere else."""
    if fmt in ("json", "text"):
        return fmt  # type: ignore[return-value]
    target = stream or sys.stderr
    try:
        return "text" if target.isatty() else "json"
    except (AttributeError, ValueError):  # a closed or odd stream
        return "json"


class RedactingFilter(logging.Filter):
    """For handlers Reframe does not format itself (Ray Serve's own log files): the message and
    any traceback are redacted before that handler's formatter sees them."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redactor(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


# Libraries whose own handlers write Reframe's requests and URLs somewhere (Ray Serve's
# replica and access logs): they get the redaction filter too.
_FOREIGN_LOGGERS = ("ray.serve",)


@dataclass(frozen=True)
class LogSetup:
    """How a process logs, as data, so it can be reproduced in another process (an actor)."""

    format: str = "auto"
    level: str = "INFO"
    context: dict[str, str | int] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()

    @classmethod
    def current(cls) -> LogSetup:
        """This process's setup and the context bound now (the render driver's job and attempt),
        to hand to another process: without the secret values, which must not travel (the
        pipeline's actors get no secrets at all; the patterns still redact in their lines)."""
        handler = _installed_handler()
        if handler is None:
            return cls(context=current_context())
        setup: LogSetup = handler.reframe_setup  # type: ignore[attr-defined]
        return cls(setup.format, setup.level, {**setup.context, **current_context()})

    def apply(self, component: str, *, stream: TextIO | None = None) -> logging.Handler:
        return configure_logging(
            component,
            fmt=self.format,
            level=self.level,
            secrets=self.secrets,
            context=self.context,
            stream=stream,
        )


def _installed_handler() -> logging.Handler | None:
    for handler in logging.getLogger().handlers:
        if getattr(handler, "reframe_setup", None) is not None:
            return handler
    return None


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a line is logged, not when it was configured:
    a command run inside a test (or after its stderr was redirected) must not keep writing to
    a stream that has since been closed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always sys.stderr


def configure_logging(
    component: str,
    *,
    fmt: str = "auto",
    level: str = "INFO",
    secrets: Iterable[str] = (),
    context: Mapping[str, str | int] | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send this process's logging (the root logger) to `stream` (stderr) in one format.

    Called again, it replaces the handler it installed before, so a process configures itself
    once whatever imports or restarts happen. Returns the handler (tests read what it wrote).
    """
    secrets = tuple(secrets)
    redactor = Redactor(secrets)
    resolved = resolve_format(fmt, stream or sys.stderr)
    handler: logging.StreamHandler[TextIO] = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(
        _json_formatter_class()(redactor) if resolved == "json" else TextFormatter(redactor)
    )
    handler.addFilter(ContextFilter(component, context))
    handler.reframe_setup = LogSetup(fmt, level, dict(context or {}), secrets)  # type: ignore[attr-defined]
    root = logging.getLogger()
    previous = _installed_handler()
    if previous is not None:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _FOREIGN_LOGGERS:
        for foreign in logging.getLogger(name).handlers:
            for old in [f for f in foreign.filters if isinstance(f, RedactingFilter)]:
                foreign.removeFilter(old)
            foreign.addFilter(RedactingFilter(redactor))
    logging.getLogger(__name__).debug(
        "logging configured: %s, level %s, pid %d", resolved, level, os.getpid()
    )
    return handler
