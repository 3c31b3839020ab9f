"""reframe.logs: one format per process, the job's context on every line, secrets never."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from reframe.logs import (
    REDACTED,
    LogSetup,
    Redactor,
    accept_request_id,
    bound,
    configure_logging,
    current_context,
    job_fields,
    resolve_format,
)


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("key rf_live_Abc123_-xyzXYZ0123456789abcdefghijklmnopqrstu", "Abc123_-xyz"),
        ("Authorization: Bearer rf_live_0123456789abcdef0123", "0123456789abcdef"),
        ("authorization: bearer opaque.token-value_42", "opaque.token-value_42"),
        ("signing with whsec_QWERTYuiop1234567890", "QWERTYuiop"),
        ("PUT /storage/k.mp4?expires=1&sig=AbCdEf0123456789&max_bytes=9", "AbCdEf0123456789"),
        ("GET https://b.s3.amazonaws.com/k?X-Amz-Signature=deadbeef99&X-Amz-Date=1", "deadbeef99"),
        ("X-Amz-Credential=AKIAEXAMPLE%2F20261203 X-Amz-Security-Token=FwoGZX", "AKIAEXAMPLE"),
        ("form email=a%40b.c&password=hunter2hunter2&csrf_token=tok123", "hunter2hunter2"),
        ('{"email": "a@b.c", "password": "correct horse"}', "correct horse"),
        ("settings secret_key='s3cr3t-v@lue!'", "s3cr3t-v@lue!"),
        ("connecting to postgresql+psycopg://reframe:pw-in-url@db:5432/x", "pw-in-url"),
        ("Cookie: reframe_session=SeSsIoNtOkEn123; other=1", "SeSsIoNtOkEn123"),
        ("GET /share/AbCdEfGhIjKlMnOpQr 200", "AbCdEfGhIjKlMnOpQr"),
        ("GET /s/AbCdEfGhIjKlMnOpQr 200", "AbCdEfGhIjKlMnOpQr"),
    ],
)
def test_redactor_removes_secrets_of_every_known_shape(text: str, secret: str) -> None:
    cleaned = Redactor()(text)
    assert secret not in cleaned
    assert REDACTED in cleaned


def test_redactor_removes_configured_values_also_json_escaped() -> None:
    value = 'my"configured\\secret'
    redactor = Redactor([value, "short"])
    assert redactor(f"value {value} here") == f"value {REDACTED} here"
    escaped = json.dumps(value)[1:-1]
    assert redactor(f'{{"x": "{escaped}"}}') == f'{{"x": "{REDACTED}"}}'
    # Short values would match ordinary words; they are left to the patterns.
    assert redactor("a short note") == "a short note"


def test_redactor_leaves_ordinary_text_alone() -> None:
    line = "GET /jobs/0123abcd 200 12.5 ms (job 0123abcd, attempt 2, key uploads/a/b.mp4)"
    assert Redactor()(line) == line


def test_json_lines_carry_component_context_and_extra_fields(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("driver", fmt="json", stream=stream, secrets=["the-configured-secret"])
    log = logging.getLogger("reframe.example")
    log.info("before")
    with bound(request_id="req-1", job_id="job-1", attempt=2):
        log.info("inside %s", "the-configured-secret")
        assert current_context() == {"request_id": "req-1", "job_id": "job-1", "attempt": 2}
    log.warning("explicit", extra=job_fields("job-9", 3))
    try:
        raise RuntimeError("failed at https://x/y?sig=abcdef123456")
    except RuntimeError:
        log.exception("with traceback")
    before, inside, explicit, failed = json_lines(stream)[-4:]
    assert before["component"] == "driver"
    assert "job_id" not in before
    assert (inside["request_id"], inside["job_id"], inside["attempt"]) == ("req-1", "job-1", 2)
    assert inside["message"] == f"inside {REDACTED}"
    assert (explicit["job_id"], explicit["attempt"], explicit["level"]) == ("job-9", 3, "WARNING")
    assert explicit["logger"] == "reframe.example"
    assert isinstance(failed["exc_info"], str)
    assert "RuntimeError" in failed["exc_info"]
    assert "abcdef123456" not in failed["exc_info"]
    assert {"time", "pid"} <= set(failed)
    assert current_context() == {}


def test_text_lines_for_a_terminal(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("api", fmt="text", stream=stream)
    with bound(request_id="r1", job_id="j1"):
        logging.getLogger("reframe.example").info("sent Bearer abcdefgh123")
    line = stream.getvalue().strip()
    assert line.endswith(f"INFO reframe.example [api req=r1 job=j1]: sent Bearer {REDACTED}")


def test_auto_format_is_text_on_a_terminal_and_json_elsewhere() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", Terminal()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Terminal()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"


def test_configuring_again_replaces_the_handler(restore_root: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("api", fmt="json", stream=first)
    configure_logging("api", fmt="json", stream=second)
    logging.getLogger("reframe.example").warning("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


def test_a_log_setup_reproduces_the_drivers_setup_and_context_elsewhere(
    restore_root: None,
) -> None:
    driver = io.StringIO()
    configure_logging("driver", fmt="json", level="DEBUG", stream=driver, secrets=["s3cret-value"])
    with bound(job_id="job-7", attempt=1):
        setup = LogSetup.current()
    # The configured secret values stay in the driver: a setup travels to other processes.
    assert setup == LogSetup("json", "DEBUG", {"job_id": "job-7", "attempt": 1})
    # What an actor does with the setup its render spec carried.
    actor = io.StringIO()
    setup.apply("actor", stream=actor)
    logging.getLogger("reframe.pipeline.actors").debug("chunk 3 from ?sig=abcdef123")
    (line,) = [x for x in json_lines(actor) if x["logger"] == "reframe.pipeline.actors"]
    assert (line["component"], line["job_id"], line["attempt"]) == ("actor", "job-7", 1)
    assert line["message"] == f"chunk 3 from ?sig={REDACTED}"


def test_foreign_handlers_get_the_redaction_filter(restore_root: None) -> None:
    serve_logger = logging.getLogger("ray.serve")
    stream = io.StringIO()
    foreign = logging.StreamHandler(stream)
    serve_logger.addHandler(foreign)
    try:
        configure_logging("api", fmt="json", stream=io.StringIO())
        serve_logger.warning("GET /storage/a?sig=SiGnAtUrE123 200")
    finally:
        serve_logger.removeHandler(foreign)
    assert "SiGnAtUrE123" not in stream.getvalue()
    assert f"sig={REDACTED}" in stream.getvalue()


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("0af7651916cd43dd8448eb211c80319c", True),
        ("client-req_1.2:3", True),
        ("has space", False),
        ("line\nbreak", False),
        ("x" * 129, False),
        ("", False),
        (None, False),
    ],
)
def test_request_ids_from_clients_are_kept_only_when_plain(given: str | None, kept: bool) -> None:
    result = accept_request_id(given)
    assert (result == given) is kept
    assert result
    assert len(result) <= 128
