"""The soak's command line: defaults, SOAK_MINUTES, --smoke, and one clear error for bad
arguments (the soak itself runs only by ``make soak``)."""

from __future__ import annotations

import pytest

from soak.__main__ import SMOKE_MINUTES, parse_args


def test_defaults_and_soak_minutes() -> None:
    assert parse_args([], env={}).minutes == 30
    assert parse_args([], env={"SOAK_MINUTES": "10"}).minutes == 10
    assert parse_args(["--minutes", "5"], env={"SOAK_MINUTES": "10"}).minutes == 5
    assert parse_args(["--smoke"], env={"SOAK_MINUTES": "10"}).minutes == SMOKE_MINUTES
    assert parse_args(["--seed", "7"], env={}).seed == 7


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--minutes", "0"], {}, "argument --minutes: must be 1-1440, got '0'"),
        (["--minutes", "ten"], {}, "argument --minutes: must be a number, got 'ten'"),
        ([], {"SOAK_MINUTES": "half"}, "SOAK_MINUTES must be a number, got 'half'"),
        (["--smoke", "--minutes", "3"], {}, "--smoke and --minutes exclude each other"),
        (["--mailboxes", "0"], {}, "--mailboxes must be 1-200, got 0"),
        (["--kill-min-s", "40"], {}, "--kill-min-s must not exceed --kill-max-s"),
    ],
)
def test_a_bad_argument_is_one_clear_error(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, env=env)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].endswith(f"error: {message}")
