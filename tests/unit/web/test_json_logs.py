"""The JSON log format and the web settings, from the environment as a process reads them."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
from pydantic import ValidationError

from pipeline.logs import JsonFormatter, configure_logging
from pipeline.settings import Settings


def test_json_lines_carry_level_logger_message_and_traceback() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord(
        "dynasync.x", logging.WARNING, __file__, 1, 'say "%s"', ("hi",), None
    )
    entry = orjson.loads(formatter.format(record))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "dynasync.x"
    assert entry["msg"] == 'say "hi"'
    assert entry["ts"].endswith("+00:00")
    try:
        raise ValueError("bad\nline")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "m", (), sys.exc_info())
    line = formatter.format(failed)
    assert "\n" not in line  # one line per record, even with a traceback
    assert "ValueError: bad" in orjson.loads(line)["exc"]


def test_configure_logging_json_writes_json_lines() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    out = io.StringIO()
    try:
        configure_logging("info", stream=out, fmt="json")
        logging.getLogger("dynasync.test").info("hello %d", 5)
    finally:
        root.handlers, level = saved
        root.setLevel(level)
    (line,) = out.getvalue().splitlines()
    assert orjson.loads(line)["msg"] == "hello 5"


def test_web_and_log_format_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNASYNC_WEB__PORT", "6067")
    monkeypatch.setenv("DYNASYNC_LOG_FORMAT", "json")
    settings = Settings(_env_file=None)
    assert settings.web.port == 6067
    assert settings.log_format == "json"


def test_web_defaults() -> None:
    web = Settings.model_fields["web"].default
    assert (web.enabled, web.host, web.port) == (True, "127.0.0.1", 6066)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DYNASYNC_WEB__PORT", "70000"),
        ("DYNASYNC_WEB__PORT", "-1"),
        ("DYNASYNC_WEB__PORT", "web"),
        ("DYNASYNC_LOG_FORMAT", "xml"),
        ("DYNASYNC_WEB__ENABLED", "perhaps"),
    ],
)
def test_garbage_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)
