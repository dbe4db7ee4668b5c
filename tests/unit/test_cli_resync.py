"""``dynasync resync``: bad arguments are one line and exit 2 before anything connects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.cli.main import main
from pipeline.cli.resync import parse_since

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["resync", "ada@x.test"], "exactly one of --full and --since"),
        (["resync", "ada@x.test", "--full", "--since", "1h"], "exactly one of --full and --since"),
        (["resync", "ada@x.test", "--since", "yesterday"], "ISO 8601"),
        (["resync", "ada@x.test", "--since", "2999-01-01T00:00:00Z"], "in the future"),
        (["resync", "ada@x.test", "--full", "--wait", "0"], "--wait"),
    ],
)
def test_bad_arguments(args: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


def test_since_forms() -> None:
    assert parse_since("15m", NOW) == datetime(2024, 5, 1, 11, 45, tzinfo=UTC)
    assert parse_since("2d", NOW) == datetime(2024, 4, 29, 12, 0, tzinfo=UTC)
    assert parse_since("2024-05-01T10:00:00", NOW) == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert parse_since("2024-05-01T12:00:00+02:00", NOW) == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("", NOW)
