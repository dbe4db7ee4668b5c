"""What ``dynasync run`` logs: no line per HTTP request unless at DEBUG, and a failure that
repeats every few seconds (the config reload) as a summary, not a line per attempt."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from pipeline.logs import CHATTY_LOGGERS, RepeatedFailure, configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the levels configure_logging changes back after the test."""
    names = ["", *CHATTY_LOGGERS]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


async def _poll(times: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"value": [], "@odata.deltaLink": str(request.url)})

    url = "https://graph.example/v1.0/users/m1/messages/delta"
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        for _ in range(times):
            (await http.get(url)).raise_for_status()


@pytest.mark.usefixtures("restore_logging")
async def test_polls_log_no_line_per_request_at_info(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("INFO")
    await _poll(3)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("http")] == []


@pytest.mark.usefixtures("restore_logging")
def test_per_request_loggers_say_only_warnings_below_debug() -> None:
    configure_logging("INFO")
    assert logging.getLogger().level == logging.INFO
    for name in CHATTY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    configure_logging("DEBUG")
    for name in CHATTY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == logging.DEBUG, name


@pytest.mark.usefixtures("restore_logging")
async def test_debug_logs_every_request(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("debug")
    await _poll(3)
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len([line for line in lines if line.startswith("HTTP Request: GET")]) == 3


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeated_failures_are_summarised_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "test.reload")
    clock = _Clock()
    failures = RepeatedFailure("config reload", logging.getLogger("test.reload"), clock=clock)
    error = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")
    for _ in range(13):  # one attempt every 5 s for a minute
        failures.failed(error)
        clock.now += 5.0
    assert failures.failing
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        (
            "WARNING",
            "config reload failed: KafkaConnectionError: Unable to bootstrap from "
            "[('127.0.0.1', 1)] (retrying)",
        ),
        (
            "WARNING",
            "config reload failing for 60 s (13 attempts): KafkaConnectionError: "
            "Unable to bootstrap from [('127.0.0.1', 1)]",
        ),
    ]
    assert all(r.exc_info is None for r in caplog.records)  # no traceback per attempt
    caplog.clear()
    failures.succeeded()
    failures.succeeded()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "config reload recovered after 65 s (13 failed attempts)")
    ]
    assert not failures.failing
    caplog.clear()
    failures.failed(error)  # a new outage starts a new count
    assert [r.getMessage() for r in caplog.records] == [
        "config reload failed: KafkaConnectionError: Unable to bootstrap from "
        "[('127.0.0.1', 1)] (retrying)"
    ]


@pytest.mark.usefixtures("restore_logging")
def test_the_command_line_logs_json_lines_when_asked() -> None:
    """``dynasync run``/``receiver`` call setup_logging with ``--json`` or
    ``DYNASYNC_LOG_FORMAT=json``: every root handler then writes one JSON object per line."""
    from pipeline.cli.common import setup_logging
    from pipeline.logs import JsonFormatter

    root = logging.getLogger()
    saved = [(h, h.formatter) for h in root.handlers]
    try:
        setup_logging("INFO", as_json=True)
        assert root.handlers
        assert all(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
        line = root.handlers[0].format(
            logging.LogRecord("dynasync.test", logging.WARNING, __file__, 1, "hi %s", ("x",), None)
        )
        assert orjson.loads(line) == {
            "ts": orjson.loads(line)["ts"],
            "level": "WARNING",
            "logger": "dynasync.test",
            "msg": "hi x",
        }
    finally:
        for handler, formatter in saved:
            handler.setFormatter(formatter)
